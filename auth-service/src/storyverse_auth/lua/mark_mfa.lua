-- Record a second-factor check on a live session (the refresh path reads it from the hash). KEYS[1] the session
-- hash; ARGV[1] the time of the check. Never creates the key. Returns 1 when the session exists.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'mfa_at', ARGV[1])
return 1
