-- sv-quota: settle a reservation from the log phase. Only a unit still held (its r:<rid> field, HDEL removed it) is
-- settled: commit charges it, release frees it (the unit is available again at once) unless it already lapsed (then
-- it is charged: only a definite failure settled in time refunds). One that decide.lua already swept as lapsed was
-- charged then: a late commit charges nothing more, a late release refunds nothing (fail closed for billing).
-- Running this twice for one request therefore changes nothing the second time.
-- KEYS: the counter hashes. ARGV: action ('commit' | 'release'), rid, now_ms, res_expiry_ms.
-- Returns per counter the committed `used` after settling. Commands: HDEL + HINCRBY (charged) or HGET per counter.
local field = 'r:' .. ARGV[2]
local charge = ARGV[1] == 'commit' or tonumber(ARGV[3]) >= tonumber(ARGV[4])
local result = {}
for j = 1, #KEYS do
  if redis.call('HDEL', KEYS[j], field) == 1 and charge then
    result[j] = redis.call('HINCRBY', KEYS[j], 'used', 1)
  else
    result[j] = tonumber(redis.call('HGET', KEYS[j], 'used') or 0)
  end
end
return result
