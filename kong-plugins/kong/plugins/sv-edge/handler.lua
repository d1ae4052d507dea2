-- sv-edge: StoryVerse's edge glue as one Kong Lua plugin. It needs no plugin server, so it cannot fail open the way
-- a Python plugin does (Kong 3.9.1 kong/runloop/plugin_servers/rpc/mp_rpc.lua:301-319 logs a failed event and the
-- request continues). README.md here has the whole contract.
--   rewrite        (global instance) strip client identity headers before any plugin or cache key reads them
--   access         410 for a retired API version; the GUARD: 503 plugin_unavailable unless every plugin the route
--                  requires left its decision mark in kong.ctx.shared; then the gateway's identity on the upstream
--                  request (sv-jwt's, never the client's), the version-less upstream path, docs files, `respond`
--   header_filter  sv-quota's RateLimit/quota headers, a proxy-cache hit's own X-Request-Id, Deprecation/Sunset,
--   body_filter    and RFC 9457 problem documents for every error (problem.lua); on a guarded route, Kong's 500 for
--                  a plugin's Lua error before the guard ran (a plugin server's desynchronised connection) becomes
--                  the guard's 503 plugin_unavailable
--   log            the access log's request_id and user_id; cookies, a Referer's query and secret query arguments
--                  (by decoded, case-folded name) never logged
-- PRIORITY 800: after sv-jwt 1450, sv-rbac 950, sv-quota 910, sv-quota-log 909 and sv-expand 810 (their marks are
-- in by then), before proxy-cache 100 (a cache hit never skips the guard, and its key sees the gateway's identity).
local problem = require "kong.plugins.sv-edge.problem"

local type, pairs, ipairs = type, pairs, ipairs
local find, sub, lower, gsub, match = string.find, string.sub, string.lower, string.gsub, string.match
local open = io.open

local SvEdge = {
  PRIORITY = 800,
  VERSION = "0.3.0",
}

-- The decision marks (storyverse_plugins.common.identity): what each plugin leaves in kong.ctx.shared, last, when
-- it lets the request through. A client cannot write kong.ctx.shared; a plugin server that is dead, hung past its
-- timeout or crashed leaves nothing.
local MARKS = {
  ["sv-jwt"] = function(shared)
    local identity = shared.sv_identity
    return type(identity) == "table" and identity.authenticated == true
  end,
  ["sv-rbac"] = function(shared)
    return shared.sv_rbac == true
  end,
  ["sv-quota"] = function(shared)
    local quota = shared.sv_quota
    return type(quota) == "table" and quota.ok == true
  end,
  ["sv-quota-log"] = function(shared)
    return shared.sv_quota_log == true
  end,
}

local PROBLEM_JSON = "application/problem+json"
local MAX_HEADERS = 100

-- the directory that holds kong/plugins/ (this file is <root>/kong/plugins/sv-edge/handler.lua)
local LUA_ROOT = (debug.getinfo(1, "S").source or ""):match("^@(.*)kong/plugins/sv%-edge/handler%.lua$") or "./"

local UNAVAILABLE = "The gateway cannot check this request right now. Please try again shortly."

local function problem_exit(conf, status, code, detail, headers)
  headers["Content-Type"] = PROBLEM_JSON
  return kong.response.exit(status, problem.document(conf.problem_type_base, status, code, detail), headers)
end

-- rewrite ---------------------------------------------------------------------------------------------------------

local strip_cache = setmetatable({}, { __mode = "k" })

local function strip_sets(conf)
  local sets = strip_cache[conf]
  if not sets then
    local names = {}
    for _, name in ipairs(conf.strip_headers or {}) do
      names[lower(name)] = true
    end
    local prefixes = {}
    for i, prefix in ipairs(conf.strip_header_prefixes or {}) do
      prefixes[i] = lower(prefix)
    end
    sets = { names = names, prefixes = prefixes }
    strip_cache[conf] = sets
  end
  return sets
end

function SvEdge:rewrite(conf)
  local sets = strip_sets(conf)
  if not next(sets.names) and #sets.prefixes == 0 then
    return
  end
  local headers = kong.request.get_headers(MAX_HEADERS)
  local clear = kong.service.request.clear_header
  for name in pairs(headers) do
    local norm = gsub(lower(name), "_", "-")
    local strip = sets.names[norm]
    if not strip then
      for i = 1, #sets.prefixes do
        if sub(norm, 1, #sets.prefixes[i]) == sets.prefixes[i] then
          strip = true
          break
        end
      end
    end
    if strip then
      clear(name)
    end
  end
end

-- access ----------------------------------------------------------------------------------------------------------

local function missing_mark(conf, shared)
  for _, name in ipairs(conf.require or {}) do
    local mark = MARKS[name]
    if not mark or not mark(shared) then
      return name
    end
  end
end

local function apply_identity(shared)
  local identity = shared.sv_identity
  if type(identity) ~= "table" or identity.authenticated ~= true then
    return
  end
  local upstream = identity.upstream
  if type(upstream) == "table" then
    local set_header, get_header = kong.service.request.set_header, kong.request.get_header
    for name, value in pairs(upstream) do
      local kind = type(value)
      -- a value a later plugin already set wins (sv-rbac's effective X-Content-Rating); client copies are gone
      if (kind == "string" or kind == "number") and get_header(name) == nil then
        set_header(name, value)
      end
    end
  end
end

local function strip_version(conf)
  if not conf.strip_version then
    return
  end
  local path = kong.request.get_path()
  local _, last = find(path, "^/api/v%d+/")
  if last then
    kong.service.request.set_path("/api/" .. sub(path, last + 1))
  end
end

local files = {}

local function serve(conf)
  local file = conf.serve.file
  local path = sub(file, 1, 1) == "/" and file or (LUA_ROOT .. "../docs/openapi/" .. file)
  local body = files[path]
  if not body then
    local fh, err = open(path, "rb")
    if not fh then
      kong.log.err("sv-edge: cannot read ", path, ": ", err)
      return problem_exit(conf, 503, "docs_unavailable", "The API documentation is not available.", {})
    end
    body = fh:read("*a")
    fh:close()
    files[path] = body
  end
  local headers = {}
  for name, value in pairs(conf.serve.headers) do
    headers[name] = value
  end
  return kong.response.exit(200, body, headers)
end

function SvEdge:access(conf)
  kong.ctx.plugin.sv_guard_ran = true -- header_filter: a 500 after this point is not a failure before the guard
  if conf.gone then
    return problem_exit(conf, 410, "api_version_retired", conf.gone, { Sunset = conf.sunset })
  end
  local shared = kong.ctx.shared
  local missing = missing_mark(conf, shared)
  if missing then
    kong.log.err("sv-edge guard: no decision mark from ", missing, " (its plugin server is down, hung or failed): 503")
    return problem_exit(conf, 503, "plugin_unavailable", UNAVAILABLE, { ["Retry-After"] = conf.retry_after })
  end
  apply_identity(shared)
  strip_version(conf)
  if conf.serve then
    return serve(conf)
  end
  if conf.respond then
    return kong.response.exit(conf.respond)
  end
end

-- header_filter / body_filter -------------------------------------------------------------------------------------

-- Kong's 500 for a Lua error raised in access before the guard ran: the plugin ran in a coroutine, its error became
-- a delayed 500 with KONG_UNEXPECTED and no later access handler ran, this one included (kong/init.lua:379-414);
-- Kong still runs the header_filter of every plugin it collected (init.lua:1641, plugins_iterator.lua:372-411).
-- A plugin server's desynchronised connection does this (a reply with another msgid, mp_rpc.lua:207-209), and a
-- StartInstance that cannot connect (plugin.lua:281-286). On a guarded route the request was never checked: the
-- guard's 503, set here where Kong allows it (pdk/response.lua:379-394; nginx sends the status after this filter).
local function failed_before_guard(conf)
  return conf.require[1] ~= nil and kong.response.get_status() == 500 and kong.response.get_source() == "error"
    and not kong.ctx.plugin.sv_guard_ran
end

local function edge_headers(conf, shared)
  if kong.response.get_header("X-Cache-Status") == "Hit" then
    -- a proxy-cache hit replays the stored headers: this request's id, not the stored RateLimit fields
    local id = shared.sv_request_id
    if type(id) == "string" then
      kong.response.set_header("X-Request-Id", id)
    end
    kong.response.clear_header("RateLimit")
    kong.response.clear_header("RateLimit-Policy")
  end
  local quota = shared.sv_quota
  if type(quota) == "table" and type(quota.headers) == "table" then
    for name, value in pairs(quota.headers) do
      kong.response.set_header(name, value)
    end
  end
  local deprecation = conf.deprecation
  if deprecation then
    kong.response.set_header("Deprecation", "@" .. deprecation.at)
    kong.response.set_header("Sunset", deprecation.sunset)
    kong.response.set_header("Link", deprecation.link)
  end
end

function SvEdge:header_filter(conf)
  edge_headers(conf, kong.ctx.shared)
  if failed_before_guard(conf) then
    kong.log.err("sv-edge guard: a plugin failed before the guard (Kong's 500 for its Lua error): 503")
    kong.response.set_status(503)
    kong.response.set_header("Retry-After", conf.retry_after)
    return problem.replace(conf, 503, "plugin_unavailable", UNAVAILABLE)
  end
  return problem.header_filter(conf)
end

function SvEdge:body_filter(conf)
  return problem.body_filter(conf)
end

-- log -------------------------------------------------------------------------------------------------------------

-- A query argument is secret when its name, percent-decoded, lower-cased and without anything but letters, digits and
-- `_`, is one of the names: `ACCESS_TOKEN=`, `access%5Ftoken=` and `access_token%00=` are as secret as `access_token=`.
local secret_sets = setmetatable({}, { __mode = "k" })

local function secret_name(key, names)
  local set = secret_sets[names]
  if not set then
    set = {}
    for i = 1, #names do
      set[lower(names[i])] = true
    end
    secret_sets[names] = set
  end
  return set[(gsub(lower(ngx.unescape_uri(key)), "[^%w_]", ""))] == true
end

local function redact_part(part, names)
  local key = match(part, "^([^=]*)=")
  if key and secret_name(key, names) then
    return key .. "=REDACTED"
  end
  return part
end

local function redact(uri, names)
  if type(uri) ~= "string" or not find(uri, "?", 1, true) then
    return uri
  end
  local path, query = match(uri, "^([^?]*)%?(.*)$")
  return path .. "?" .. gsub(query, "[^&]+", function(part)
    return redact_part(part, names)
  end)
end

-- A Referer is the web app's page URL: on the reset-password, verify-email and join-family pages its query holds the
-- one-time token (auth-service RESET_URL ...?token=). Its query is never logged, whatever the names in it.
local function referer_without_query(value)
  return type(value) == "string" and (gsub(value, "%?.*$", "?REDACTED")) or value
end

local function redact_referer(set)
  local referer = kong.request.get_headers(MAX_HEADERS)["referer"]
  if type(referer) == "table" then
    local out = {}
    for i, value in ipairs(referer) do
      out[i] = referer_without_query(value)
    end
    set("request.headers.referer", out)
  elseif type(referer) == "string" and find(referer, "?", 1, true) then
    set("request.headers.referer", referer_without_query(referer))
  end
end

-- kong.log.set_serialize_value before the serializers (file-log 9, ...) read the record
function SvEdge:log(conf)
  local set = kong.log.set_serialize_value
  local shared = kong.ctx.shared
  local id = shared.sv_request_id
  set("request_id", type(id) == "string" and id or ngx.var.kong_request_id)
  local identity = shared.sv_identity
  if type(identity) == "table" and type(identity.sub) == "string" then
    set("user_id", identity.sub)
  end
  set("request.headers.cookie", nil)
  set("response.headers.set-cookie", nil)
  redact_referer(set)
  local names = conf.redact_query_args
  if #names == 0 then
    return
  end
  local var = ngx.var
  local uri = var.request_uri
  if type(uri) == "string" and find(uri, "?", 1, true) then
    set("request.uri", redact(uri, names))
    set("request.url", var.scheme .. "://" .. var.host .. ":" .. var.server_port .. redact(uri, names))
    local args, secret = kong.request.get_query(), false
    for key in pairs(args) do
      if type(key) == "string" and secret_name(key, names) then
        args[key], secret = "REDACTED", true
      end
    end
    if secret then
      set("request.querystring", args)
    end
  end
  local upstream_uri = var.upstream_uri
  if type(upstream_uri) == "string" and find(upstream_uri, "?", 1, true) then
    set("upstream_uri", redact(upstream_uri, names))
  end
end

return SvEdge
