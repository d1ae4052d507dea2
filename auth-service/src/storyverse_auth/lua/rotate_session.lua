-- Compare-and-rotate one session's refresh token, atomically (the only writer of "gen").
-- KEYS[1] the session hash (sv:auth:v1:session:{<sid>}).
-- ARGV: presented generation, now (s), idle ttl (s), grace (s), key ttl cap (s).
-- Returns {code, account_id, claims, cv, mfa_at}: code 1 rotated (the caller issues gen+1), 2 inside the grace
-- window (the same successor), 3 reuse (the session is deleted), 0 unknown, expired or revoked. claims is the cached
-- JSON of the access token's subject (nil when never filled or invalidated), cv its invalidation counter, mfa_at
-- the time of the session's second-factor check (nil if none): a refresh needs nothing else.
local s = redis.call('HMGET', KEYS[1], 'gen', 'rotated_at', 'last_used', 'expires_at', 'account_id', 'claims', 'cv',
  'mfa_at')
if not s[1] then return {0, false} end
local gen, presented = tonumber(s[1]), tonumber(ARGV[1])
local now, idle, grace = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local expires_at, last_used = tonumber(s[4]), tonumber(s[3])
if now >= expires_at or now - last_used >= idle then
  redis.call('DEL', KEYS[1])
  return {0, false}
end
if gen == presented then
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'rotated_at', ARGV[2], 'last_used', ARGV[2])
  local ttl = math.min(expires_at - now, idle, tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[1], math.max(math.ceil(ttl), 1))
  return {1, s[5], s[6], s[7] or '0', s[8]}
end
if gen == presented + 1 and tonumber(s[2] or '-1') >= now - grace then
  return {2, s[5], s[6], s[7] or '0', s[8]}
end
redis.call('DEL', KEYS[1])
return {3, s[5]}
