// Conformance check of an Upstash-compatible REST endpoint (cmd/upstash-local)
// against the official @upstash/redis client (and @upstash/ratelimit, whose
// scripts carry Upstash's "#!lua flags=allow-key-locking" shebang).
//
//   UPSTASH_REDIS_REST_URL=http://127.0.0.1:8079 UPSTASH_REDIS_REST_TOKEN=t \
//     node tools/node/upstash-conformance.mjs
//
// The whole case list runs twice: with the client's defaults (auto-pipelining
// on, base64 response encoding on) and without them (enableAutoPipelining:
// false, responseEncoding: false). Output is one JSON object per line:
//   {"mode":"defaults","case":"strings","ok":true,"ms":3}
//   {"mode":"plain","case":"noscript","ok":false,"error":"..."}
// and a last line {"summary":{"passed":N,"failed":M,"skipped":S}}. The exit
// status is 0 only when every case passed.
//
// CONFORMANCE_BACKEND=embedded marks cases whose exact text depends on a real
// redis-server (Lua error messages) as skipped.
// CONFORMANCE_ONLY=name runs only the named case.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Ratelimit } from "@upstash/ratelimit";

const url = process.env.UPSTASH_REDIS_REST_URL;
const token = process.env.UPSTASH_REDIS_REST_TOKEN;
if (!url || !token) {
  console.error("set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN");
  process.exit(2);
}
const embedded = process.env.CONFORMANCE_BACKEND === "embedded";
const only = process.env.CONFORMANCE_ONLY ?? "";
const CASE_TIMEOUT_MS = 15000;

const modes = {
  defaults: {},
  plain: { enableAutoPipelining: false, responseEncoding: false },
};

const sha1 = (s) => createHash("sha1").update(s, "utf8").digest("hex");

// Throws unless fn rejects with a message matching re.
async function rejects(fn, re) {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an error matching ${re}, got success`);
  assert.match(String(err?.message ?? err), re);
}

const SHEBANG_INCRBY = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";

// Each case gets a client and k(name), a key unique to the mode and case.
const cases = [
  ["ping", async (r) => {
    assert.equal(await r.ping(), "PONG");
  }],
  ["strings", async (r, k) => {
    assert.equal(await r.set(k("s"), "hello"), "OK");
    assert.equal(await r.get(k("s")), "hello");
    assert.equal(await r.append(k("s"), " world"), 11);
    assert.equal(await r.strlen(k("s")), 11);
    assert.equal(await r.getrange(k("s"), 0, 4), "hello");
    assert.equal(await r.get(k("missing")), null);
    assert.equal(await r.type(k("s")), "string");
  }],
  ["mset-mget", async (r, k) => {
    assert.equal(await r.mset({ [k("a")]: "x", [k("b")]: "y" }), "OK");
    assert.deepEqual(await r.mget(k("a"), k("missing"), k("b")), ["x", null, "y"]);
  }],
  ["set-nx-xx", async (r, k) => {
    assert.equal(await r.set(k("n"), "first", { nx: true }), "OK");
    assert.equal(await r.set(k("n"), "second", { nx: true }), null);
    assert.equal(await r.get(k("n")), "first");
    assert.equal(await r.set(k("absent"), "v", { xx: true }), null);
  }],
  ["del-exists", async (r, k) => {
    await r.set(k("a"), "1");
    await r.set(k("b"), "2");
    assert.equal(await r.exists(k("a"), k("b"), k("c")), 2);
    assert.equal(await r.del(k("a"), k("b"), k("c")), 2);
    assert.equal(await r.exists(k("a"), k("b")), 0);
  }],
  ["counters", async (r, k) => {
    assert.equal(await r.incr(k("c")), 1);
    assert.equal(await r.incrby(k("c"), 10), 11);
    assert.equal(await r.decr(k("c")), 10);
    assert.equal(await r.decrby(k("c"), 5), 5);
    assert.equal(await r.incrbyfloat(k("c"), 1.5), 6.5);
    assert.equal(await r.incrbyfloat(k("c"), -0.25), 6.25);
  }],
  ["counter-on-string-fails", async (r, k) => {
    await r.set(k("s"), "not a number");
    await rejects(() => r.incr(k("s")), /not an integer/);
  }],
  ["expiry", async (r, k) => {
    assert.equal(await r.set(k("e"), "v", { ex: 100 }), "OK");
    const ttl = await r.ttl(k("e"));
    assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
    assert.equal(await r.pexpire(k("e"), 50000), 1);
    const pttl = await r.pttl(k("e"));
    assert.ok(pttl > 40000 && pttl <= 50000, `pttl ${pttl}`);
    assert.equal(await r.persist(k("e")), 1);
    assert.equal(await r.ttl(k("e")), -1);
    assert.equal(await r.expireat(k("e"), 1), 1); // a time in the past deletes the key
    assert.equal(await r.get(k("e")), null);
    assert.equal(await r.ttl(k("e")), -2);
    assert.equal(await r.set(k("px"), "v", { px: 60000 }), "OK");
    assert.ok((await r.pttl(k("px"))) > 50000);
  }],
  ["hashes", async (r, k) => {
    assert.equal(await r.hset(k("h"), { f1: "v1", f2: 2 }), 2);
    assert.equal(await r.hget(k("h"), "f1"), "v1");
    assert.equal(await r.hincrby(k("h"), "f2", 3), 5);
    assert.deepEqual(await r.hgetall(k("h")), { f1: "v1", f2: 5 });
    assert.equal(await r.hexists(k("h"), "f1"), 1);
    assert.equal(await r.hdel(k("h"), "f1"), 1);
    assert.equal(await r.hlen(k("h")), 1);
    assert.equal(await r.hget(k("h"), "nope"), null);
    assert.equal(await r.type(k("h")), "hash");
  }],
  ["hash-json-fields", async (r, k) => {
    await r.hset(k("h"), { obj: { a: 1, b: [1, "two"] } });
    assert.deepEqual(await r.hget(k("h"), "obj"), { a: 1, b: [1, "two"] });
  }],
  ["lists", async (r, k) => {
    assert.equal(await r.rpush(k("l"), "a", "b", "c"), 3);
    assert.equal(await r.lpush(k("l"), "z"), 4);
    assert.deepEqual(await r.lrange(k("l"), 0, -1), ["z", "a", "b", "c"]);
    assert.equal(await r.lpop(k("l")), "z");
    assert.equal(await r.rpop(k("l")), "c");
    assert.equal(await r.llen(k("l")), 2);
    assert.equal(await r.lindex(k("l"), 1), "b");
  }],
  ["sets", async (r, k) => {
    assert.equal(await r.sadd(k("s"), "a", "b", "a"), 2);
    assert.deepEqual((await r.smembers(k("s"))).sort(), ["a", "b"]);
    assert.equal(await r.sismember(k("s"), "a"), 1);
    assert.equal(await r.sismember(k("s"), "q"), 0);
    assert.equal(await r.scard(k("s")), 2);
  }],
  ["sorted-sets", async (r, k) => {
    assert.equal(await r.zadd(k("z"), { score: 1, member: "a" }, { score: 2, member: "b" }), 2);
    assert.deepEqual(await r.zrange(k("z"), 0, -1, { withScores: true }), ["a", 1, "b", 2]);
    assert.equal(await r.zscore(k("z"), "b"), 2);
    assert.equal(await r.zincrby(k("z"), 1.5, "a"), 2.5);
    assert.deepEqual(await r.zrange(k("z"), 0, -1), ["b", "a"]);
    assert.equal(await r.zrank(k("z"), "a"), 1);
    assert.equal(await r.zcard(k("z")), 2);
    assert.equal(await r.zrem(k("z"), "a"), 1);
  }],
  ["ok-and-lookalike-values", async (r, k) => {
    // "OK" is the one string Upstash leaves unencoded; values that happen to
    // be valid base64 must survive the decoding step too.
    await r.set(k("ok"), "OK");
    await r.set(k("b64"), "abcd");
    await r.set(k("pong"), "PONG");
    assert.equal(await r.get(k("ok")), "OK");
    assert.deepEqual(await r.mget(k("ok"), k("b64"), k("pong")), ["OK", "abcd", "PONG"]);
  }],
  ["numeric-and-json-values", async (r, k) => {
    await r.set(k("n"), "123");
    assert.equal(await r.get(k("n")), 123);
    await r.set(k("z"), "0123");
    assert.equal(await r.get(k("z")), "0123");
    await r.set(k("j"), { a: 1, list: [1, "two", null], nested: { ok: true } });
    assert.deepEqual(await r.get(k("j")), { a: 1, list: [1, "two", null], nested: { ok: true } });
    await r.set(k("bool"), true);
    assert.equal(await r.get(k("bool")), true);
  }],
  ["unicode-key-and-value", async (r, k) => {
    const key = k("ключ-🔑-鍵");
    const value = "значение ✓ 🚀 — 値";
    assert.equal(await r.set(key, value), "OK");
    assert.equal(await r.get(key), value);
    assert.equal(await r.strlen(key), Buffer.byteLength(value, "utf8"));
  }],
  ["space-and-slash-key", async (r, k) => {
    const key = k("key with spaces/and?query=chars&x#y");
    assert.equal(await r.set(key, "a b  c"), "OK");
    assert.equal(await r.get(key), "a b  c");
    assert.equal(await r.exists(key), 1);
  }],
  ["large-value", async (r, k) => {
    let v = "";
    const chunk = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    while (v.length < 1_000_000) v += chunk;
    v = "x" + v.slice(0, 1_000_000 - 1); // leading letter: not parsed as a number
    assert.equal(await r.set(k("big"), v), "OK");
    assert.equal(await r.strlen(k("big")), 1_000_000);
    const got = await r.get(k("big"));
    assert.equal(got.length, v.length);
    assert.ok(got === v, "1 MB value differs after the round trip");
  }],
  ["eval", async (r, k) => {
    const got = await r.eval("return {1, 'two', {3, 'four'}, KEYS[1], ARGV[1], redis.status_reply('FINE')}", [k("key")], ["arg"]);
    assert.deepEqual(got, [1, "two", [3, "four"], k("key"), "arg", "FINE"]);
    await rejects(() => r.eval("return redis.error_reply('my failure')", [], []), /my failure/);
  }],
  ["evalsha", async (r) => {
    const src = "return ARGV[1] .. '!'";
    const sha = await r.scriptLoad(src);
    assert.equal(sha, sha1(src));
    assert.equal(await r.evalsha(sha, [], ["x"]), "x!");
    assert.deepEqual(await r.scriptExists(sha, "0".repeat(40)), [1, 0]);
  }],
  ["noscript", async (r) => {
    await rejects(() => r.evalsha("f".repeat(40), [], []), /NOSCRIPT/);
  }],
  ["script-exec-falls-back-to-eval", async (r, k) => {
    const s = r.createScript("return 'ran ' .. ARGV[1]");
    await r.scriptFlush();
    await rejects(() => s.evalsha([], ["once"]), /NOSCRIPT/);
    assert.equal(await s.exec([], ["once"]), "ran once");
    assert.equal(await s.evalsha([], ["twice"]), "ran twice");
  }],
  ["shebang-script", async (r, k) => {
    const sha = await r.scriptLoad(SHEBANG_INCRBY);
    assert.equal(sha, sha1(SHEBANG_INCRBY), "SCRIPT LOAD must answer the original script's SHA-1");
    assert.equal(await r.evalsha(sha, [k("c")], [5]), 5);
    assert.equal(await r.eval(SHEBANG_INCRBY, [k("c")], [1]), 6);
    assert.deepEqual(await r.scriptExists(sha), [1]);
  }],
  ["shebang-script-after-flush", async (r, k) => {
    const s = r.createScript(SHEBANG_INCRBY);
    assert.equal(await s.exec([k("c")], [2]), 2);
    await r.scriptFlush();
    await rejects(() => r.evalsha(sha1(SHEBANG_INCRBY), [k("c")], [1]), /NOSCRIPT/);
    assert.equal(await s.exec([k("c")], [3]), 5);
    assert.equal(await r.evalsha(sha1(SHEBANG_INCRBY), [k("c")], [1]), 6);
  }],
  ["shebang-script-error-names-client-sha", async (r) => {
    if (embedded) return "skip: the embedded store's Lua errors do not name the script";
    const src = "#!lua flags=allow-key-locking\nlocal x = 1\nreturn undefined_global_var.y";
    let msg = "";
    try {
      await r.eval(src, [], []);
    } catch (e) {
      msg = String(e.message);
    }
    assert.match(msg, /user_script:3/, "line numbers must match the client's script");
    assert.ok(msg.includes(sha1(src)), `error should name the client's SHA-1: ${msg}`);
  }],
  ["pipeline-with-failing-item", async (r, k) => {
    const p = r.pipeline();
    p.set(k("p"), "text");
    p.incr(k("p"));
    p.get(k("p"));
    const res = await p.exec({ keepErrors: true });
    assert.equal(res.length, 3);
    assert.equal(res[0].result, "OK");
    assert.match(res[1].error, /not an integer/);
    assert.equal(res[2].result, "text");
    const p2 = r.pipeline();
    p2.set(k("q"), "text");
    p2.incr(k("q"));
    await rejects(() => p2.exec(), /Command 2 \[ incr \] failed/);
  }],
  ["multi-exec", async (r, k) => {
    const tx = r.multi();
    tx.set(k("t"), "1");
    tx.incr(k("t"));
    tx.hset(k("th"), { f: "v" });
    tx.get(k("t"));
    assert.deepEqual(await tx.exec(), ["OK", 2, 1, 2]);
  }],
  ["multi-exec-runtime-error", async (r, k) => {
    const tx = r.multi();
    tx.set(k("t"), "text");
    tx.incr(k("t")); // fails while executing; the others still run
    tx.set(k("after"), "ran");
    const res = await tx.exec({ keepErrors: true });
    assert.equal(res[0].result, "OK");
    assert.match(res[1].error, /not an integer/);
    assert.equal(res[2].result, "OK");
    assert.equal(await r.get(k("after")), "ran");
  }],
  ["auto-pipeline-concurrency", async (r, k) => {
    const got = await Promise.all(Array.from({ length: 25 }, () => r.incr(k("c"))));
    assert.deepEqual([...got].sort((a, b) => a - b), Array.from({ length: 25 }, (_, i) => i + 1));
    const [a, b, c] = await Promise.all([r.set(k("x"), "1"), r.get(k("c")), r.get(k("missing"))]);
    assert.deepEqual([a, b, c], ["OK", 25, null]);
  }],
  ["wrong-token", async (r, k, opts) => {
    const bad = new Redis({ url, token: "wrong-" + token, retry: false, ...opts });
    await rejects(() => bad.get(k("x")), /WRONGPASS|[Uu]nauthorized/);
  }],
  ["ratelimit-sliding-window", async (r, k) => {
    const rl = new Ratelimit({ redis: r, limiter: Ratelimit.slidingWindow(3, "60 s"), prefix: k("rl"), ephemeralCache: false });
    const got = [];
    for (let i = 0; i < 4; i++) {
      const { success, remaining, limit } = await rl.limit("caller");
      got.push([success, remaining, limit]);
    }
    assert.deepEqual(got, [[true, 2, 3], [true, 1, 3], [true, 0, 3], [false, 0, 3]]);
  }],
  ["ratelimit-token-bucket", async (r, k) => {
    const rl = new Ratelimit({ redis: r, limiter: Ratelimit.tokenBucket(1, "60 s", 2), prefix: k("rl"), ephemeralCache: false });
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await rl.limit("caller")).success);
    assert.deepEqual(got, [true, true, false]);
    assert.equal((await rl.getRemaining("caller")).remaining, 0);
  }],
  ["ratelimit-fixed-window", async (r, k) => {
    const rl = new Ratelimit({ redis: r, limiter: Ratelimit.fixedWindow(2, "60 s"), prefix: k("rl"), ephemeralCache: false });
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await rl.limit("caller")).success);
    assert.deepEqual(got, [true, true, false]);
    await rl.resetUsedTokens("caller");
    assert.equal((await rl.limit("caller")).success, true);
  }],
];

function withTimeout(p, ms) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`case timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const summary = { passed: 0, failed: 0, skipped: 0 };
const runID = Date.now().toString(36);
for (const [mode, opts] of Object.entries(modes)) {
  const r = new Redis({ url, token, ...opts });
  for (const [name, fn] of cases) {
    if (only && name !== only) continue;
    const k = (part) => `conf:${runID}:${mode}:${name}:${part}`;
    const start = Date.now();
    const line = { mode, case: name };
    try {
      const outcome = await withTimeout(fn(r, k, opts), CASE_TIMEOUT_MS);
      if (typeof outcome === "string" && outcome.startsWith("skip")) {
        line.skipped = true;
        line.reason = outcome;
        summary.skipped++;
      } else {
        summary.passed++;
      }
      line.ok = true;
    } catch (e) {
      line.ok = false;
      line.error = String(e?.stack ?? e).slice(0, 2000);
      summary.failed++;
    }
    line.ms = Date.now() - start;
    console.log(JSON.stringify(line));
  }
}
console.log(JSON.stringify({ summary }));
process.exit(summary.failed === 0 ? 0 : 1);
