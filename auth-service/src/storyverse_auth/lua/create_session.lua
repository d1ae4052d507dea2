-- Create a session unless one with this id exists (a login, or a session moved from PostgreSQL, which must not
-- overwrite a newer generation a concurrent refresh already wrote). KEYS[1] the session hash; KEYS[2], when given,
-- the account's session index, written first (one server: standalone or Sentinel; on Cluster the index lives in
-- another slot and the caller writes it before calling). If the index write fails the script stops there, so
-- nothing live is ever unlisted.
-- ARGV: ttl (s), index score, index member (the session id), then field/value pairs. Returns 1 when created.
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
