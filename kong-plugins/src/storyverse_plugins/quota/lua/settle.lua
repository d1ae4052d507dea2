-- sv-quota: settle a reservation from the log phase. Commit charges a unit only once: when the reservation was
-- still held (ZREM removed it), or when it had already lapsed (a slow success is still a story). Release frees it.
-- KEYS: per counter: its hash and its reservations zset.
-- ARGV: action ('commit' | 'release'), rid, now_ms, res_expiry_ms, expire_at_ms.
-- Returns per counter the committed `used` after settling.
local action, rid = ARGV[1], ARGV[2]
local now, res_expiry, expire_at = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local result = {}
for j = 1, #KEYS / 2 do
  local hkey, zkey = KEYS[2 * j - 1], KEYS[2 * j]
  local held = redis.call('ZREM', zkey, rid)
  local used
  if action == 'commit' and (held == 1 or now > res_expiry) then
    used = redis.call('HINCRBY', hkey, 'used', 1)
    redis.call('PEXPIRE', hkey, math.max(1, expire_at - now))
  else
    used = tonumber(redis.call('HGET', hkey, 'used') or 0)
  end
  result[j] = used
end
return result
