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

local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local skew = tonumber(ARGV[3])
local n = #KEYS

local floor, min, max, find, sub = math.floor, math.min, math.max, string.find, string.sub

-- ceil(a / b) for integers a >= 0, b > 0 with a + b < 2^53: the double
-- quotient can only round onto an integer when the dividend is >= 2^53.
local function ceildiv(a, b)
  return floor((a + b - 1) / b)
end

local stored = redis.call('MGET', unpack(KEYS))
local units, at, caps, rates, write = {}, {}, {}, {}, {}
local allowed = 1

for i = 1, n do
  local cap = tonumber(ARGV[2 + 2 * i])
  local rate = tonumber(ARGV[3 + 2 * i])
  caps[i], rates[i], write[i] = cap, rate, false
  local u, a
  local v = stored[i]
  if v then
    local sep = find(v, ':', 1, true)
    if sep then
      u = tonumber(sub(v, 1, sep - 1))
      a = tonumber(sub(v, sep + 1))
    end
  end
  if u == nil or a == nil then
    -- Missing (or unreadable) state: a full bucket.
    units[i], at[i] = cap, now
  else
    u = min(max(u, 0), cap)
    if a > now + skew then
      -- A stored time too far ahead is not believed: rebase it (and store
      -- that even if nothing is charged, or the bucket stays frozen).
      units[i], at[i], write[i] = u, now + skew, true
    else
      local t = max(now, a)
      local elapsed = t - a
      if elapsed > 0 and u < cap then
        -- Exact: a product too large for a double is still >= cap - u.
        local add = elapsed * rate
        if add >= cap - u then
          u = cap
        else
          u = u + add
        end
      end
      units[i], at[i] = u, t
    end
  end
  if units[i] < cost then allowed = 0 end
end

for i = 1, n do
  if allowed == 1 then
    units[i] = units[i] - cost
    write[i] = true
  end
  if write[i] then
    -- Expire when full: from then on a missing key means the same thing.
    local ttl = at[i] - now + ceildiv(caps[i] - units[i], rates[i])
    redis.call('SET', KEYS[i], string.format('%d:%d', units[i], at[i]),
      'PX', string.format('%d', max(ttl, 1)))
  end
end

local reply = {allowed}
for i = 1, n do
  reply[2 * i] = units[i]
  reply[2 * i + 1] = at[i]
end
return reply
