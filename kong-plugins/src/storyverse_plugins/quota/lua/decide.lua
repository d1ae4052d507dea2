-- sv-quota: every limit of one request, decided atomically in one round trip (all KEYS share one hash slot).
-- Mirrors quota/strategies.py (gcra_step, counter_step), which MemoryStorage runs; tests hold both to the same results.
--
-- KEYS: n_rate GCRA keys, then per quota counter: its hash (used, grant) and its reservations zset, then n_block
--       abuse hashes of the subject (0 or 1; written by abuse.lua).
-- ARGV: now_ms, n_rate, n_counter, rid ('' = no reservation), res_expiry_ms, expire_at_ms, quota_shadow (0/1),
--       then per rate: emission_ms, capacity, shadow (0/1); then per counter: limit; then n_block (absent = 0).
-- Returns: {allowed, reserved, per rate: ok, remaining, reset_ms, retry_ms, per counter: ok, limit, used, reserved,
--           block_until_ms (0 = not blocked)}.
-- Nothing is written unless every enforced (non-shadow) limit allows and the subject is not blocked: rejected
-- requests never consume. The one exception: lapsed reservations are moved into `used` (charged) first.

local now = tonumber(ARGV[1])
local n_rate, n_counter = tonumber(ARGV[2]), tonumber(ARGV[3])
local rid, res_expiry, expire_at = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local quota_shadow = ARGV[7] == '1'
local EPS = 1e-9
-- TTLs are relative to the caller's clock (injectable), never PEXPIREAT against the server's clock
local ttl = math.max(1, expire_at - now)

local allowed = true
local out = {}
local new_tats = {}

for i = 1, n_rate do
  local base = 7 + (i - 1) * 3
  local emission, capacity = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local shadow = ARGV[base + 3] == '1'
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - capacity * emission
  if now < allow_at then
    if not shadow then allowed = false end
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(tat - now)
    out[#out + 1] = math.ceil(allow_at - now)
  else
    new_tats[i] = new_tat
    out[#out + 1] = 1
    out[#out + 1] = math.floor((now - new_tat) / emission + capacity + EPS)
    out[#out + 1] = math.ceil(new_tat - now)
    out[#out + 1] = 0
  end
end

local counter_ok = {}
local counter_out = {}
for j = 1, n_counter do
  local hkey, zkey = KEYS[n_rate + 2 * j - 1], KEYS[n_rate + 2 * j]
  local limit = tonumber(ARGV[7 + 3 * n_rate + j])
  -- a lapsed reservation was never settled (sv-quota-log dead or hung at log time): it counts as charged, as an
  -- unknown outcome does; only a definite failure, settled in time, refunds (settle.lua)
  local lapsed = redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
  if lapsed > 0 then
    redis.call('HINCRBY', hkey, 'used', lapsed)
    if redis.call('PTTL', hkey) < 0 then redis.call('PEXPIRE', hkey, ttl) end
  end
  local fields = redis.call('HMGET', hkey, 'used', 'grant')
  local used, grant = tonumber(fields[1] or 0), tonumber(fields[2] or 0)
  local held = redis.call('ZCARD', zkey)
  -- a retry of this very request (its first call timed out after Redis ran it) does not count its own unit twice
  if rid ~= '' and redis.call('ZSCORE', zkey, rid) then held = held - 1 end
  local eff = limit + grant
  local ok = used + held + 1 <= eff
  if not ok and not quota_shadow then allowed = false end
  counter_ok[j] = ok
  counter_out[j] = {ok and 1 or 0, eff, used, held}
end

-- an abuse block of this subject (same hash slot): folded in here so enforcing it costs no extra round trip
local block_until = 0
local n_block = tonumber(ARGV[8 + 3 * n_rate + n_counter] or 0)
if n_block > 0 then
  block_until = tonumber(redis.call('HGET', KEYS[n_rate + 2 * n_counter + 1], 'until') or 0)
  if block_until > now then allowed = false else block_until = 0 end
end

local reserved = 0
if allowed then
  for i = 1, n_rate do
    if new_tats[i] then
      redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', math.ceil(new_tats[i] - now) + 1)
    end
  end
  if rid ~= '' and n_counter > 0 then
    for j = 1, n_counter do
      if counter_ok[j] then
        local hkey, zkey = KEYS[n_rate + 2 * j - 1], KEYS[n_rate + 2 * j]
        redis.call('ZADD', zkey, res_expiry, rid)
        redis.call('PEXPIRE', zkey, ttl)
        redis.call('HSETNX', hkey, 'used', 0)
        redis.call('PEXPIRE', hkey, ttl)
        counter_out[j][4] = counter_out[j][4] + 1
        reserved = 1
      end
    end
  end
end

local result = {allowed and 1 or 0, reserved}
for _, v in ipairs(out) do result[#result + 1] = v end
for j = 1, n_counter do
  for _, v in ipairs(counter_out[j]) do result[#result + 1] = v end
end
result[#result + 1] = block_until
return result
