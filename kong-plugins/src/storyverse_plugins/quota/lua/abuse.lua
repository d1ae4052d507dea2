-- sv-quota: one abuse strike (a 401/403/429 answered to a subject), counted in the log phase, atomically.
-- KEYS[1]: the subject's abuse hash (until, n, win, level, seen, reason, kind, subject);
-- KEYS[2]: the subject's block key (string: the block's end, PX its duration), what decide.lua reads with the TATs;
-- KEYS[3]: (optional) the IP's set of distinct failed-login fingerprints (credential stuffing).
-- ARGV: now_ms, window_ms, threshold, base_ms, max_ms, memory_ms, fingerprint ('' = none), distinct,
--       login_window_ms, kind ('ip' | 'account'), subject (for the admin list).
-- `threshold` strikes inside `window_ms`, or `distinct` failed-login fingerprints inside `login_window_ms`, block the
-- subject for base * 2^(level-1) ms (capped at max_ms); the level grows with each block and is forgotten `memory_ms`
-- after the last one. Strikes while blocked are not counted (a client retrying into its block does not escalate).
-- Returns {blocked, until_ms, level, duration_ms, new_block, reason, strikes, distinct_failures}.
local now = tonumber(ARGV[1])
local window, threshold = tonumber(ARGV[2]), tonumber(ARGV[3])
local base, cap, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fp, distinct, login_window = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local h = redis.call('HMGET', KEYS[1], 'until', 'n', 'win', 'level', 'seen')
local until_ms, level = tonumber(h[1] or 0), tonumber(h[4] or 0)
if until_ms > now then
  return {1, until_ms, level, 0, 0, 'blocked', 0, 0}
end
local n, win, seen = tonumber(h[2] or 0), tonumber(h[3] or 0), tonumber(h[5] or 0)
if win <= now then
  n = 0
  win = now + window
end
n = n + 1
local reason = ''
if n >= threshold then reason = 'strikes' end
local failures = 0
if fp ~= '' and #KEYS > 2 then
  redis.call('SADD', KEYS[3], fp)
  if redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIRE', KEYS[3], login_window) end
  failures = redis.call('SCARD', KEYS[3])
  if failures >= distinct then reason = 'credential_stuffing' end
end
if seen > 0 and seen + memory <= now then level = 0 end
if reason ~= '' then
  level = level + 1
  local duration = math.floor(math.min(base * 2 ^ (level - 1), cap))
  until_ms = now + duration
  redis.call('HSET', KEYS[1], 'until', until_ms, 'n', 0, 'win', 0, 'level', level, 'seen', now,
    'reason', reason, 'kind', ARGV[10], 'subject', ARGV[11])
  redis.call('PEXPIRE', KEYS[1], duration + memory)
  redis.call('SET', KEYS[2], until_ms, 'PX', duration)
  if #KEYS > 2 then redis.call('DEL', KEYS[3]) end
  return {1, until_ms, level, duration, 1, reason, n, failures}
end
redis.call('HSET', KEYS[1], 'n', n, 'win', win)
local keep = win - now
if seen > 0 then keep = math.max(keep, seen + memory - now) end
redis.call('PEXPIRE', KEYS[1], math.max(1, keep))
return {0, 0, level, 0, 0, '', n, failures}
