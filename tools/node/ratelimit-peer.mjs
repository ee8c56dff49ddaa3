// Peer driver for bucketgate's benchmarks (package benchmarks): runs the
// official @upstash/ratelimit token bucket, through the official
// @upstash/redis client with its defaults (auto-pipelining, base64 replies,
// keep-alive), against an Upstash-compatible endpoint, and reports what it
// decided and how long each limit() call took.
//
//   UPSTASH_REDIS_REST_URL=http://127.0.0.1:8079 UPSTASH_REDIS_REST_TOKEN=t \
//     node tools/node/ratelimit-peer.mjs --callers 1 --requests-per-caller 1000 \
//       --refill 1 --interval "10 s" --burst 10 --cache on --prefix peer-flood
//
//   node tools/node/ratelimit-peer.mjs --plan plan.txt --containers 4 \
//       --refill 100 --interval "1 s" --burst 100000 --prefix peer-zipf
//
// A plan file lists the measured calls, one per line, "CALLER CONTAINER"
// (two integers: the identifier caller-CALLER, decided by container
// CONTAINER, 0 <= CONTAINER < --containers); --callers and
// --requests-per-caller are then ignored. Each container is its own
// Ratelimit instance with its own @upstash/redis client and its own
// ephemeral cache, as separate Lambda containers would have. Without a plan
// every call is decided by container 0.
//
// Protocol (so the Go harness can count server requests and Redis commands
// for the measured calls only):
//   1. --warmup N calls on an identifier of their own (loads the script,
//      opens the keep-alive connection); not reported.
//   2. prints {"ready":true} on stdout and waits for one line on stdin
//      (any text) — unless --no-wait is given.
//   3. runs the measured calls one after another — the plan's, or callers ×
//      requests round robin over the callers (caller 0, 1, ..., C-1, then
//      again) — and prints one JSON line:
//        {"calls":N,"allowed":A,"denied":D,"reasons":{"cacheBlock":n},
//         "latencyUs":[...]}        one sample per call, microseconds
// Exit status 0 on success; 2 on bad usage; 1 when a call fails.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { Redis } from "@upstash/redis";
import { Ratelimit } from "@upstash/ratelimit";

function usage(msg) {
  console.error(`ratelimit-peer: ${msg}`);
  process.exit(2);
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      callers: { type: "string", default: "1" },
      "requests-per-caller": { type: "string", default: "1" },
      refill: { type: "string", default: "1" },
      interval: { type: "string", default: "10 s" },
      burst: { type: "string", default: "10" },
      cache: { type: "string", default: "on" },
      prefix: { type: "string", default: "peer" },
      warmup: { type: "string", default: "20" },
      plan: { type: "string" },
      containers: { type: "string", default: "1" },
      "no-wait": { type: "boolean", default: false },
    },
    strict: true,
  }));
} catch (e) {
  usage(e.message);
}

const url = process.env.UPSTASH_REDIS_REST_URL;
const token = process.env.UPSTASH_REDIS_REST_TOKEN;
if (!url || !token) usage("set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN");

function positiveInt(name, min) {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}, got ${JSON.stringify(opts[name])}`);
  return n;
}
const callers = positiveInt("callers", 1);
const perCaller = positiveInt("requests-per-caller", 1);
const refill = positiveInt("refill", 1);
const burst = positiveInt("burst", 1);
const warmup = positiveInt("warmup", 0);
const containers = positiveInt("containers", 1);
if (opts.cache !== "on" && opts.cache !== "off") usage(`--cache must be on or off, got ${JSON.stringify(opts.cache)}`);

// The measured calls: [caller, container] pairs.
let plan;
if (opts.plan !== undefined) {
  let text;
  try {
    text = readFileSync(opts.plan, "utf8");
  } catch (e) {
    usage(`--plan: ${e.message}`);
  }
  plan = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length !== 2 || !f.every(Number.isInteger) || f[0] < 0 || f[1] < 0 || f[1] >= containers) {
      usage(`--plan line ${i + 1}: want "CALLER CONTAINER" with 0 <= CONTAINER < ${containers}, got ${JSON.stringify(line)}`);
    }
    plan.push(f);
  }
  if (plan.length === 0) usage("--plan: no calls");
} else {
  plan = [];
  for (let i = 0; i < callers * perCaller; i++) plan.push([i % callers, 0]);
}

// One Ratelimit (and one Redis client, one ephemeral cache) per container.
const limiters = [];
for (let c = 0; c < containers; c++) {
  limiters.push(
    new Ratelimit({
      redis: new Redis({ url, token }),
      limiter: Ratelimit.tokenBucket(refill, opts.interval, burst),
      // The ephemeral cache is on by default (a Map); false turns it off.
      ephemeralCache: opts.cache === "on" ? new Map() : false,
      prefix: opts.prefix,
      analytics: false,
    }),
  );
}

async function waitForGo() {
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve, reject) => {
    rl.once("line", resolve);
    rl.once("close", () => reject(new Error("stdin closed before the go line")));
  });
  rl.close();
}

async function main() {
  for (const ratelimit of limiters) {
    for (let i = 0; i < warmup; i++) {
      // Warm-up calls on an identifier no measured call uses; with a burst
      // smaller than warmup they also exercise the denial path once.
      await ratelimit.limit(`warmup`);
    }
  }
  if (!opts["no-wait"]) await waitForGo();

  const n = plan.length;
  const latencyUs = new Array(n);
  const reasons = {};
  let allowed = 0;
  for (let i = 0; i < n; i++) {
    const [caller, container] = plan[i];
    const id = `caller-${caller}`;
    const t0 = performance.now();
    const res = await limiters[container].limit(id);
    latencyUs[i] = Math.round((performance.now() - t0) * 1000);
    if (res.success) allowed++;
    if (res.reason) reasons[res.reason] = (reasons[res.reason] ?? 0) + 1;
    if (res.reason === "timeout") throw new Error("limit() timed out (5 s): is the server up?");
  }
  process.stdout.write(JSON.stringify({ calls: n, allowed, denied: n - allowed, reasons, latencyUs }) + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`ratelimit-peer: ${e?.message ?? e}`);
    process.exit(1);
  },
);
