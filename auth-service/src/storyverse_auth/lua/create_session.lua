-- Create a session unless one with this id exists (a login, or a session moved from PostgreSQL, which must not
-- overwrite a newer generation a concurrent refresh already wrote). KEYS[1] the session hash.
-- ARGV: ttl (s), then field/value pairs. Returns 1 when created.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
