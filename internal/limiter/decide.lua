#!lua flags=allow-key-locking
-- bucketgate: decide one request on N buckets (token buckets and quotas),
-- charging all of them or none. A mirror of bucket.go and settings.go; read
-- their comments for the arithmetic. Every number stays an integer below
-- 2^53, so Lua's doubles are exact. Token amounts are in units (1 token =
-- 86,400,000 units); times in ms since the Unix epoch (the caller's clock).
--
-- KEYS[1..nb]     the buckets. A token bucket holds "<units>:<at>", a quota
--                 "<tokens spent>"; a missing key is a full bucket / an
--                 unspent quota.
-- KEYS[nb+1]      the live-settings key, when ARGV[5] asks to read it
-- KEYS[last]      the warm-up key, when ARGV[5] asks to read it
-- ARGV[1]         now, ms
-- ARGV[2]         cost, whole tokens
-- ARGV[3]         max clock skew, ms
-- ARGV[4]         nb, the number of buckets
-- ARGV[5]         1 = read the live settings; + 2 = read (or start) warm-up
-- ARGV[6]         the request's tier (for tier-scoped settings)
-- ARGV[7], [8]    live factors (ppm) the caller last read, for every limit
--                 and for the tier; used unless the settings are read here
-- ARGV[9]         warm-up: "" none, else "<ppm0>,<duration ms>,<start ms>,<version>"
--                 (start "" when unknown)
-- ARGV[6+4i..9+4i] bucket i: kind ("t": scaled by tier and all factors,
--                 "g": by the all factor, "u": not scaled, "q": quota),
--                 a (capacity in units, or the quota in tokens), b (refill
--                 in units per ms, or the end of the quota's window), and
--                 guess: what the caller believes the key holds ("" absent).
--
-- Commands: a request the guesses say can pass writes each bucket with one
-- SET ... GET PX; when every old value equals its guess, that is all (1+N
-- commands, EVALSHA included). A wrong guess is repaired in the same call:
-- the decision is remade on the real values, then the wrongly guessed
-- buckets are written again (allowed) or every written bucket is put back
-- (denied) — no other call ever sees a write made on a wrong guess. A
-- request the guesses say cannot pass reads the buckets with one MGET and
-- writes only if it is allowed after all. Reading the settings costs one
-- GET; the warm-up start one GET (plus one SET, once per version).
--
-- Reply: {allowed, settings read ("-" when not read), warm-up start ("" when
-- not read), ppm of "t" buckets, ppm of "g" buckets, then per bucket: units
-- (or tokens spent), at, stored value ("" when absent)}.

local now, cost, skew, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mode, tier = tonumber(ARGV[5]), ARGV[6]
local floor, find, sub, format = math.floor, string.find, string.sub, string.format
local ONE, MAXU, MAXP, UNIT = 1000000, 4503599627370496, 100000000, 86400000

-- scale(x, p) = floor(x*p/1e6) in [1, MAXU]; mulppm likewise in [1, MAXP].
local function scale(x, p)
  if p == ONE then return x end
  local hi = floor(x / ONE)
  local v = hi * p + floor((x - hi * ONE) * p / ONE)
  if v > MAXU then v = MAXU elseif v < 1 then v = 1 end
  return v
end
local function mulppm(a, b)
  local hi = floor(a / ONE)
  local v = hi * b + floor((a - hi * ONE) * b / ONE)
  if v > MAXP then v = MAXP elseif v < 1 then v = 1 end
  return v
end
local function ramp(p0, start, dur, t)
  if dur <= 0 then return p0 end
  local e = t - start
  if e <= 0 then return p0 end
  if e >= dur then return ONE end
  local d, es, ds = ONE - p0, floor(e / 1000), floor(dur / 1000)
  if d >= 0 then return p0 + floor(d * es / ds) end
  return p0 - floor(-d * es / ds)
end

local reply = {0, '-', ''}
local pall, ptier = tonumber(ARGV[7]), tonumber(ARGV[8])
local nk = nb
if mode % 2 == 1 then
  nk = nk + 1
  local raw = redis.call('GET', KEYS[nk]) or ''
  reply[2] = raw
  pall, ptier = ONE, ONE
  for scope, p, st, rp, ex in string.gmatch(raw, '([^;=]+)=([0-9]+),([0-9]+),([0-9]+),([0-9]+)') do
    p, st, rp, ex = tonumber(p), tonumber(st), tonumber(rp), tonumber(ex)
    if p >= 1000 and p <= MAXP then
      local f = ONE
      if ex == 0 or now < ex then f = ramp(p, st, rp, now) end
      if scope == '*' then pall = f elseif scope == tier then ptier = f end
    end
  end
end
local pwarm = ONE
if ARGV[9] ~= '' then
  local c1 = find(ARGV[9], ',', 1, true)
  local c2 = find(ARGV[9], ',', c1 + 1, true)
  local c3 = find(ARGV[9], ',', c2 + 1, true)
  local p0, dur = tonumber(sub(ARGV[9], 1, c1 - 1)), tonumber(sub(ARGV[9], c1 + 1, c2 - 1))
  local start = tonumber(sub(ARGV[9], c2 + 1, c3 - 1))
  if mode >= 2 then
    -- The warm-up key holds up to 4 "version=start" entries, newest last,
    -- so that versions deployed side by side do not restart each other.
    local ver, key = sub(ARGV[9], c3 + 1), KEYS[nk + 1]
    local raw = redis.call('GET', key) or ''
    for v, s in string.gmatch(raw, '([^;=]+)=([0-9]+)') do
      if v == ver then start = tonumber(s) end
    end
    if not start then
      start = now
      local kept, n = {}, 0
      for e in string.gmatch(raw, '[^;]+') do n = n + 1; kept[n] = e end
      local first = math.max(1, n - 2)
      local out = {}
      for i = first, n do out[#out + 1] = kept[i] end
      out[#out + 1] = ver .. '=' .. format('%d', now)
      redis.call('SET', key, table.concat(out, ';'))
    end
    reply[3] = format('%d', start)
  end
  if start then pwarm = ramp(p0, start, dur, now) end
end
local pg = mulppm(pall, pwarm)
local pt = mulppm(pg, ptier)
reply[4], reply[5] = pt, pg

-- The buckets' parameters.
local quota, cap, rate, guess = {}, {}, {}, {}
for i = 1, nb do
  local k, a, b = ARGV[6 + 4 * i], tonumber(ARGV[7 + 4 * i]), tonumber(ARGV[8 + 4 * i])
  if k == 't' then a, b = scale(a, pt), scale(b, pt)
  elseif k == 'g' then a, b = scale(a, pg), scale(b, pg) end
  quota[i], cap[i], rate[i] = (k == 'q'), a, b
  local g = ARGV[9 + 4 * i]
  if g == '' then g = false end
  guess[i] = g
end
local costu = cost * UNIT

-- decide(vals): the states after the decision, from stored values, into
-- su/sa; returns allowed and which states must be stored when denied
-- (rebased token buckets).
local su, sa, rebased = {}, {}, {}
local function decide(vals)
  local ok = true
  for i = 1, nb do
    local v = vals[i]
    local u, a, rb = 0, 0, false
    if quota[i] then
      u = (v and tonumber(v)) or 0
      if u < 0 then u = 0 end
      if u > cap[i] - cost then ok = false end
    else
      u, a = cap[i], now
      local pu, pa
      if v then
        local sep = find(v, ':', 1, true)
        if sep then pu, pa = tonumber(sub(v, 1, sep - 1)), tonumber(sub(v, sep + 1)) end
      end
      if pu and pa then
        if pu < 0 then pu = 0 elseif pu > cap[i] then pu = cap[i] end
        if pa > now + skew then
          u, a, rb = pu, now + skew, true
        else
          u = pu
          if pa > now then a = pa end
          local elapsed = a - pa
          if elapsed > 0 and u < cap[i] then
            local add = elapsed * rate[i]
            if add >= cap[i] - u then u = cap[i] else u = u + add end
          end
        end
      end
      if u < costu then ok = false end
    end
    su[i], sa[i], rebased[i] = u, a, rb
  end
  if ok then
    for i = 1, nb do
      if quota[i] then su[i] = su[i] + cost else su[i] = su[i] - costu end
    end
  end
  return ok
end

-- The value and TTL to store for bucket i in state (u, a).
local function enc(i, u, a)
  if quota[i] then
    return format('%d', u), format('%d', math.max(rate[i] - now + skew, 1))
  end
  local ttl = a - now
  if u < cap[i] then ttl = ttl + floor((cap[i] - u + rate[i] - 1) / rate[i]) end
  return format('%d:%d', u, a), format('%d', math.max(ttl, 1))
end

-- The TTL a stored value v of bucket i was written with, as of now.
local function ttlOf(i, v)
  local ttl = rate[i] - now + skew
  if not quota[i] then
    local sep = find(v, ':', 1, true)
    local pu, pa
    if sep then pu, pa = tonumber(sub(v, 1, sep - 1)), tonumber(sub(v, sep + 1)) end
    if pu and pa then
      if pu < 0 then pu = 0 elseif pu > cap[i] then pu = cap[i] end
      ttl = pa - now
      if pu < cap[i] then ttl = ttl + floor((cap[i] - pu + rate[i] - 1) / rate[i]) end
    else
      ttl = floor((cap[i] + rate[i] - 1) / rate[i])
    end
  end
  return format('%d', math.max(ttl, 1))
end

local stored = {}
local allowed = decide(guess)
if allowed then
  local real, miss = {}, false
  for i = 1, nb do
    local v, ttl = enc(i, su[i], sa[i])
    stored[i] = v
    real[i] = redis.call('SET', KEYS[i], v, 'GET', 'PX', ttl)
    if real[i] ~= guess[i] then miss = true end
  end
  if miss then
    allowed = decide(real)
    for i = 1, nb do
      if allowed then
        if real[i] ~= guess[i] then
          local v, ttl = enc(i, su[i], sa[i])
          stored[i] = v
          redis.call('SET', KEYS[i], v, 'PX', ttl)
        end
      elseif rebased[i] then
        local v, ttl = enc(i, su[i], sa[i])
        stored[i] = v
        redis.call('SET', KEYS[i], v, 'PX', ttl)
      elseif real[i] then
        -- Put the old value back, expiring when it would have.
        stored[i] = real[i]
        redis.call('SET', KEYS[i], real[i], 'PX', ttlOf(i, real[i]))
      else
        stored[i] = ''
        redis.call('DEL', KEYS[i])
      end
    end
  end
else
  local real = {}
  if nb > 0 then real = redis.call('MGET', unpack(KEYS, 1, nb)) end
  allowed = decide(real)
  for i = 1, nb do
    stored[i] = real[i] or ''
    if allowed or rebased[i] then
      local v, ttl = enc(i, su[i], sa[i])
      stored[i] = v
      redis.call('SET', KEYS[i], v, 'PX', ttl)
    end
  end
end

if allowed then reply[1] = 1 end
for i = 1, nb do
  local j = 3 * i + 3
  reply[j], reply[j + 1], reply[j + 2] = su[i], sa[i], stored[i] or ''
end
return reply
