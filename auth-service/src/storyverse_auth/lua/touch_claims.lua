-- Invalidate a session's cached claims (an account, family, child, control or plan change): drop them and move the
-- invalidation counter on, so a refresh that read PostgreSQL before the change cannot cache what it read.
-- KEYS[1] the session hash. Never creates the key. Returns 1 when the session exists.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'cv', 1)
redis.call('HDEL', KEYS[1], 'claims')
return 1
