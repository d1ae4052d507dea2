-- sv-quota: settle a reservation from the log phase. Only a reservation still in the zset is settled (ZREM removed
-- it): commit charges it, release frees it (the unit is available again at once). One that decide.lua already swept
-- as lapsed was charged then: a late commit charges nothing more, a late release refunds nothing (fail closed for
-- billing). Running this twice for one request therefore changes nothing the second time.
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
  if action == 'commit' and held == 1 then
    used = redis.call('HINCRBY', hkey, 'used', 1)
    redis.call('PEXPIRE', hkey, math.max(1, expire_at - now))
  else
    used = tonumber(redis.call('HGET', hkey, 'used') or 0)
  end
  result[j] = used
end
return result
