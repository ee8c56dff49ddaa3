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
// Protocol (so the Go harness can count server requests and Redis commands
// for the measured calls only):
//   1. --warmup N calls on an identifier of their own (loads the script,
//      opens the keep-alive connection); not reported.
//   2. prints {"ready":true} on stdout and waits for one line on stdin
//      (any text) — unless --no-wait is given.
//   3. runs the measured calls one after another: callers × requests, round
//      robin over the callers (caller 0, 1, ..., C-1, then again), and prints
//      one JSON line:
//        {"calls":N,"allowed":A,"denied":D,"reasons":{"cacheBlock":n},
//         "latencyUs":[...]}        one sample per call, microseconds
// Exit status 0 on success; 2 on bad usage; 1 when a call fails.

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
if (opts.cache !== "on" && opts.cache !== "off") usage(`--cache must be on or off, got ${JSON.stringify(opts.cache)}`);

const redis = new Redis({ url, token });
const ratelimit = new Ratelimit({
  redis,
  limiter: Ratelimit.tokenBucket(refill, opts.interval, burst),
  // The ephemeral cache is on by default (a Map); false turns it off.
  ephemeralCache: opts.cache === "on" ? new Map() : false,
  prefix: opts.prefix,
  analytics: false,
});

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
  for (let i = 0; i < warmup; i++) {
    // Warm-up calls on an identifier no measured call uses; with a burst
    // smaller than warmup they also exercise the denial path once.
    await ratelimit.limit(`warmup`);
  }
  if (!opts["no-wait"]) await waitForGo();

  const n = callers * perCaller;
  const latencyUs = new Array(n);
  const reasons = {};
  let allowed = 0;
  for (let i = 0; i < n; i++) {
    const id = `caller-${i % callers}`;
    const t0 = performance.now();
    const res = await ratelimit.limit(id);
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
