-- Delete one session if it belongs to the given account (or to any account when ARGV[1] is empty).
-- KEYS[1] the session hash. Returns 1 when this call deleted it, 0 otherwise (unknown, or someone else's).
local owner = redis.call('HGET', KEYS[1], 'account_id')
if not owner then return 0 end
if ARGV[1] ~= '' and owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
