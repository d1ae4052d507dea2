-- Cache the access token's subject in a session read from PostgreSQL after a miss, unless the claims were
-- invalidated since the rotation that missed (cv moved on) or the session ended. KEYS[1] the session hash.
-- ARGV: cv seen by that rotation, claims JSON, mfa_at ('' when none). Returns 1 when cached.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (redis.call('HGET', KEYS[1], 'cv') or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'claims', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[3]) end
return 1
