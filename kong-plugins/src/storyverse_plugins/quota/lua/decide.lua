-- sv-quota: every limit of one request, decided atomically in one round trip (all KEYS share one hash slot).
-- The decision only: the script returns the raw state it read and Python derives what clients see (remaining,
-- reset, retry) with the same pure functions MemoryStorage uses (quota/strategies.py), so the Lua stays small.
--
-- KEYS: n_rate GCRA keys (string: TAT ms), then n_block (0/1) block key (string: block end ms, written by
--       abuse.lua), then n_counter daily counter hashes (used, grant, r:<rid> -> expiry ms per held unit).
-- ARGV: now_ms, n_rate, n_block, n_counter, per rate: emission_ms, capacity, shadow (0/1); when n_counter > 0:
--       rid ('' = check only), res_expiry_ms, ttl_ms (the counter's life, set once when it is created),
--       quota_shadow (0/1), per counter: limit.
-- Returns {allowed, reserved, block_until | false, per rate: stored TAT | false, per counter: used, grant, held}
--   (held excludes this request's own unit; a blocked subject's answer stops after the TATs).
-- Commands: one MGET (every TAT and the block), one HGETALL per counter; when allowed one SET ... PX per rate and
-- one HSET per counter reserved (+ PEXPIRE on the day's first). Rejected requests write nothing, except that lapsed
-- reservations (never settled: sv-quota-log dead or hung) are charged (moved into `used`) whenever they are seen.

local now = tonumber(ARGV[1])
local nr, nb, nc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local got = {}
if nr + nb > 0 then got = redis.call('MGET', unpack(KEYS, 1, nr + nb)) end
local out = {1, 0, false}
for i = 1, nr do out[3 + i] = got[i] end
if nb == 1 and got[nr + 1] and tonumber(got[nr + 1]) > now then
  out[1], out[3] = 0, got[nr + 1]
  return out
end

local allowed = true
local tats = {}
for i = 1, nr do
  local e = tonumber(ARGV[2 + 3 * i])
  local tat = tonumber(got[i]) or now
  if tat < now then tat = now end
  tat = tat + e
  if now < tat - tonumber(ARGV[3 + 3 * i]) * e then
    if ARGV[4 + 3 * i] == '0' then allowed = false end
  else
    tats[i] = tat
  end
end

local c0 = 4 + 3 * nr
local field = 'r:' .. (ARGV[c0 + 1] or '')
local fits, fresh = {}, {}
for j = 1, nc do
  local key = KEYS[nr + nb + j]
  local h = redis.call('HGETALL', key)
  local used, grant, held, lapsed = nil, 0, 0, {}
  for k = 1, #h, 2 do
    local f = h[k]
    if f == 'used' then used = tonumber(h[k + 1])
    elseif f == 'grant' then grant = tonumber(h[k + 1])
    elseif string.byte(f, 1) == 114 and string.byte(f, 2) == 58 then -- 'r:': a held unit
      if tonumber(h[k + 1]) <= now then lapsed[#lapsed + 1] = f
      elseif f ~= field then held = held + 1 end -- a retry of this request does not count its own unit twice
    end
  end
  fresh[j] = used == nil
  used = used or 0
  if #lapsed > 0 then -- charged, as an unknown outcome is; only a definite failure settled in time refunds
    redis.call('HDEL', key, unpack(lapsed))
    used = redis.call('HINCRBY', key, 'used', #lapsed)
    if fresh[j] then redis.call('PEXPIRE', key, ARGV[c0 + 3]) fresh[j] = false end
  end
  fits[j] = used + held + 1 <= tonumber(ARGV[c0 + 4 + j]) + grant
  if not fits[j] and ARGV[c0 + 4] == '0' then allowed = false end
  out[#out + 1] = used
  out[#out + 1] = grant
  out[#out + 1] = held
end

if not allowed then
  out[1] = 0
  return out
end
for i = 1, nr do
  if tats[i] then redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil(tats[i] - now) + 1) end
end
if nc > 0 and field ~= 'r:' then
  for j = 1, nc do
    if fits[j] then
      local key = KEYS[nr + nb + j]
      if fresh[j] then
        redis.call('HSET', key, field, ARGV[c0 + 2], 'used', 0)
        redis.call('PEXPIRE', key, ARGV[c0 + 3])
      else
        redis.call('HSET', key, field, ARGV[c0 + 2])
      end
      out[2] = 1
    end
  end
end
return out
