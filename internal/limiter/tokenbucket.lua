#!lua flags=allow-key-locking
-- bucketgate token bucket: check N buckets and take COST from all of them,
-- or from none when any holds too little. A mirror of refill/decide in
-- bucket.go; read that file's comments for the arithmetic.
--
-- Every number is an integer below 2^53, so Lua's doubles are exact.
-- Amounts are in token units (1 token = 86,400,000 units); times are in ms.
--
-- KEYS[i]        bucket i's key; its value is "<units>:<at>" (units held at
--                time <at>, ms since the epoch on the writer's clock)
-- ARGV[1]        now: the caller's clock, ms since the Unix epoch
-- ARGV[2]        cost of the request, units
-- ARGV[3]        max clock skew, ms: a stored <at> is believed at most this
--                far ahead of now; beyond, the bucket is rebased to now+skew
-- ARGV[2+2i]     bucket i's capacity, units
-- ARGV[3+2i]     bucket i's refill rate, units per ms
--
-- Reply: {allowed (1 or 0), units_1, at_1, ..., units_n, at_n}, the
-- buckets' states after the decision (charged when allowed).
--
-- Redis commands: one MGET, plus one SET ... PX per bucket when allowed
-- (when denied, only for a bucket whose stored time had to be rebased).
-- No clock and no randomness: the caller's clock comes in ARGV, so the
-- script is deterministic and every key it touches is in KEYS (as Upstash's
-- allow-key-locking flag requires).
--
-- Written for speed (Upstash bills by command, but Redis time is latency):
-- locals for library functions, the reply table doubling as the state
-- table, no per-call closures.

local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local skew = tonumber(ARGV[3])
local floor, max, find, sub, format = math.floor, math.max, string.find, string.sub, string.format

local stored = redis.call('MGET', unpack(KEYS))
local reply = {1}
local allowed = 1

for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 + 2 * i])
  -- A missing (or unreadable) state is a full bucket.
  local u, a = cap, now
  local v = stored[i]
  if v then
    local sep = find(v, ':', 1, true)
    local su, sa
    if sep then
      su, sa = tonumber(sub(v, 1, sep - 1)), tonumber(sub(v, sep + 1))
    end
    if su and sa then
      -- Clamp to [0, cap]: the limit may have shrunk.
      if su < 0 then su = 0 elseif su > cap then su = cap end
      if sa > now + skew then
        -- A stored time too far ahead is not believed: rebase it, and
        -- store that even if nothing is charged (else the bucket stays
        -- frozen until the caller's clock reaches it).
        u, a = su, now + skew
        stored[i] = 0
      else
        -- Never backwards: refill from the stored time up to max(now, sa).
        u = su
        if sa > now then a = sa end
        local elapsed = a - sa
        if elapsed > 0 and u < cap then
          -- Exact: a product too large for a double is still >= cap - u.
          local add = elapsed * tonumber(ARGV[3 + 2 * i])
          if add >= cap - u then u = cap else u = u + add end
        end
      end
    end
  end
  if u < cost then allowed = 0 end
  reply[2 * i], reply[2 * i + 1] = u, a
end
reply[1] = allowed

for i = 1, #KEYS do
  if allowed == 1 or stored[i] == 0 then
    local u, a = reply[2 * i], reply[2 * i + 1]
    if allowed == 1 then
      u = u - cost
      reply[2 * i] = u
    end
    -- Expire when full: from then on a missing key means the same thing.
    -- ceil((cap - u) / rate) as floor((cap - u + rate - 1) / rate): exact,
    -- as the dividend stays below 2^53.
    local rate = tonumber(ARGV[3 + 2 * i])
    local ttl = a - now + floor((tonumber(ARGV[2 + 2 * i]) - u + rate - 1) / rate)
    redis.call('SET', KEYS[i], format('%d:%d', u, a), 'PX', format('%d', max(ttl, 1)))
  end
end

return reply
