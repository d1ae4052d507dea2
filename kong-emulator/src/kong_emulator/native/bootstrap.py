"""The Lua side of the native runtime: the ``kong``/``ngx`` tables, Kong's sandbox and the serverless compiler.

Run once per Lua state (`runtime.LuaState`). The chunk returns one function that takes the Python callbacks and
returns the API table the Python side drives. Kong sources mirrored here (Kong 3.9.1, the release we deploy -- not
master, whose sandbox is a different module with more globals):

* `kong/tools/kong-lua-sandbox.lua` ``BASE_ENV`` (lines 59-80, verbatim): the only globals a sandboxed chunk sees
  besides its env -- no ``print``, ``bit``, ``jit``, ``io``, ``table.new/clear/pack/unpack``; ``protect_module``:
  modules are read-only ("Can not modify %s.%s. Protected by the sandbox."); ``sandbox.protect``: ``_G`` is the
  environment itself, the chunk runs under ``pcall`` and its error is raised again;
* `kong/tools/sandbox.lua`: ``untrusted_lua = off`` refuses, ``on`` falls back to ``_G``, ``sandbox`` puts the
  caller's ``env`` (``{kong = kong, ngx = ngx}``) in front of a ``require`` that only loads
  ``untrusted_lua_sandbox_requires`` ("require '%s' not allowed within sandbox");
* `kong/plugins/pre-function/_handler.lua` ``compile_phase_array``: the self-replacing first-run closures.
"""

BOOTSTRAP = rb"""
local dispatch, emit_log, var_get, methods, mode, requires, cjson_mod, phase_of, header_get, header_set = ...

local G = _G
local type, tostring, select, error, pairs, ipairs, next = type, tostring, select, error, pairs, ipairs, next
local setmetatable, rawset, assert, load, pcall = setmetatable, rawset, assert, load, pcall
local co_create, co_resume, co_status, co_yield = coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local concat, unpack = table.concat, unpack

local EXIT = {}
local cur = { shared = {}, plugin = {}, ngx_ctx = {}, arg = {} }

local function message(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = tostring((select(i, ...)))
  end
  return concat(parts)
end

-- the PDK: every function is the Python PDK function of the same name ---------------------------------------
local function pdk_fn(name)
  return function(...)
    local ok, res = dispatch(name, ...)
    if not ok then
      error(res, 2)
    end
    return res
  end
end

local function pdk_exit(name)
  -- kong.response.exit/error: Kong yields the plugin's coroutine (access) or ngx.exit()s: the chunk stops here
  return function(...)
    local ok, res = dispatch(name, ...)
    if not ok then
      error(res, 2)
    end
    co_yield(EXIT)
  end
end

local kong = { version = methods.version, version_num = methods.version_num }
for _, m in ipairs(methods) do
  local name, terminal = m[1], m[2]
  local node = kong
  local parts = {}
  for part in name:gmatch("[^%.]+") do
    parts[#parts + 1] = part
  end
  for i = 2, #parts - 1 do
    node[parts[i]] = node[parts[i]] or {}
    node = node[parts[i]]
  end
  node[parts[#parts]] = terminal and pdk_exit(name) or pdk_fn(name)
end

local LEVELS = { "debug", "info", "notice", "warn", "err", "crit", "alert", "emerg" }
local log = kong.log or {}
setmetatable(log, { __call = function(_, ...) emit_log("notice", message(...)) end })
for _, level in ipairs(LEVELS) do
  log[level] = function(...) emit_log(level, message(...)) end
end
log.inspect = setmetatable({ on = function() end, off = function() end }, {
  __call = function(_, ...) emit_log("debug", message(...)) end,
})
log.deprecation = setmetatable({ write = function(...) emit_log("warn", message(...)) end }, {
  __call = function(_, ...) emit_log("warn", message(...)) end,
})
kong.log = log

-- kong.response.get_raw_body / set_raw_body in body_filter: Kong 3.x's own, over ngx.arg (chunks buffered per
-- request, ngx.arg[1] = nil until the last one); outside body_filter the Python side raises the phase error
local body_buffers = setmetatable({}, { __mode = "k" })
local function body_filter_only(name, ...)
  if phase_of() ~= "body_filter" then
    local ok, res = dispatch(name, ...)
    if not ok then error(res, 3) end
    return false, res
  end
  return true
end
kong.response = kong.response or {}
kong.response.get_raw_body = function()
  local here, res = body_filter_only("kong.response.get_raw_body")
  if not here then return res end
  local arg = cur.arg
  local chunk, eof = arg[1], arg[2]
  local buffer = body_buffers[cur.ngx_ctx]
  if eof and not buffer then
    return chunk
  end
  if type(chunk) == "string" and chunk ~= "" then
    if buffer then
      buffer.n = buffer.n + 1
      buffer[buffer.n] = chunk
    else
      buffer = { chunk, n = 1 }
      body_buffers[cur.ngx_ctx] = buffer
    end
  end
  if eof then
    local body = buffer and concat(buffer, "", 1, buffer.n) or ""
    arg[1] = body
    return body
  end
  arg[1] = nil
  return nil
end
kong.response.set_raw_body = function(body)
  local here, res = body_filter_only("kong.response.set_raw_body", body)
  if not here then return res end
  if type(body) ~= "string" then
    error("body must be a string", 2)
  end
  if cur.arg[2] then
    cur.arg[1] = body
  else
    cur.arg[1] = nil
  end
end

-- kong.ctx.shared / kong.ctx.plugin: the current request's tables (Kong: a proxy over ngx.ctx)
kong.ctx = setmetatable({}, {
  __index = function(_, k)
    if k == "shared" then return cur.shared end
    if k == "plugin" then return cur.plugin end
  end,
  __newindex = function(_, k)
    error("Cannot modify kong.ctx." .. tostring(k) .. ". Protected by the sandbox.", 2)
  end,
})

kong.table = {
  clear = function(t) for k in pairs(t) do t[k] = nil end end,
  merge = function(t1, t2)
    local res = {}
    if t1 then for k, v in pairs(t1) do res[k] = v end end
    if t2 then for k, v in pairs(t2) do res[k] = v end end
    return res
  end,
}
kong.configuration = setmetatable({ untrusted_lua = mode }, {
  __newindex = function(_, k) error("Cannot modify kong.configuration." .. tostring(k) .. ".", 2) end,
})

-- ngx ----------------------------------------------------------------------------------------------------------
local ngx = {
  OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5,
  STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8,
  HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200, HTTP_CREATED = 201, HTTP_ACCEPTED = 202,
  HTTP_NO_CONTENT = 204, HTTP_PARTIAL_CONTENT = 206, HTTP_SPECIAL_RESPONSE = 300,
  HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302, HTTP_SEE_OTHER = 303, HTTP_NOT_MODIFIED = 304,
  HTTP_TEMPORARY_REDIRECT = 307, HTTP_PERMANENT_REDIRECT = 308, HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401,
  HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403, HTTP_NOT_FOUND = 404, HTTP_NOT_ALLOWED = 405,
  HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408, HTTP_CONFLICT = 409, HTTP_GONE = 410,
  HTTP_UPGRADE_REQUIRED = 426, HTTP_TOO_MANY_REQUESTS = 429, HTTP_CLOSE = 444, HTTP_ILLEGAL = 451,
  HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_METHOD_NOT_IMPLEMENTED = 501, HTTP_BAD_GATEWAY = 502,
  HTTP_SERVICE_UNAVAILABLE = 503, HTTP_GATEWAY_TIMEOUT = 504, HTTP_VERSION_NOT_SUPPORTED = 505,
  HTTP_INSUFFICIENT_STORAGE = 507,
  null = newproxy(false),
}
local NGX_LEVEL = { [0] = "err", "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug" }
ngx.log = function(level, ...)
  local name = NGX_LEVEL[level]
  if not name then
    error("bad argument #1 to 'log' (bad log level)", 2)
  end
  emit_log(name, message(...))
end
ngx.exit = function(status)
  if type(status) ~= "number" then
    error("bad argument #1 to 'exit' (number expected, got " .. type(status) .. ")", 2)
  end
  if status >= 200 then
    local ok, res = dispatch("ngx.exit", status)
    if not ok then error(res, 2) end
  end
  co_yield(EXIT)
end
ngx.var = setmetatable({}, {
  __index = function(_, k)
    local ok, res = var_get(k)
    if not ok then error(res, 2) end
    return res
  end,
  __newindex = function(_, k)
    error('variable "' .. tostring(k) .. '" cannot be assigned a value (not emulated)', 2)
  end,
})
ngx.get_phase = function() return phase_of() end
-- ngx.header: the response headers about to be sent (read anywhere, written until header_filter ends)
ngx.header = setmetatable({}, {
  __index = function(_, k)
    local ok, res = header_get(k)
    if not ok then error(res, 2) end
    return res
  end,
  __newindex = function(_, k, v)
    local ok, res = header_set(k, v)
    if not ok then error(res, 2) end
  end,
})
for _, name in ipairs({ "now", "time", "today", "localtime", "utctime", "http_time", "cookie_time",
                        "encode_base64", "decode_base64", "md5", "md5_bin", "sha1_bin", "crc32_short",
                        "crc32_long", "escape_uri", "unescape_uri", "encode_args", "decode_args",
                        "quote_sql_str", "update_time" }) do
  ngx[name] = pdk_fn("ngx." .. name)
end
ngx.req = {
  get_headers = pdk_fn("kong.request.get_headers"),
  get_method = pdk_fn("kong.request.get_method"),
  get_uri_args = pdk_fn("kong.request.get_query"),
  http_version = pdk_fn("kong.request.get_http_version"),
  set_header = pdk_fn("kong.service.request.set_header"),
  clear_header = pdk_fn("kong.service.request.clear_header"),
  start_time = pdk_fn("ngx.req.start_time"),
  get_body_data = pdk_fn("kong.request.get_raw_body"),
  read_body = function() end,
}
ngx.config = { subsystem = "http", debug = false, nginx_version = 1025003, ngx_lua_version = 10026 }
ngx.worker = { pid = pdk_fn("ngx.worker.pid"), id = pdk_fn("ngx.worker.id"), count = pdk_fn("ngx.worker.count"),
               exiting = function() return false end }
local NOT_EMULATED = {
  say = true, print = true, flush = true, eof = true, redirect = true, sleep = true, send_headers = true,
  re = true, location = true, socket = true, thread = true, timer = true, shared = true,
  status = true, resp = true, headers_sent = true, is_subrequest = true, exec = true,
}
setmetatable(ngx, {
  __index = function(_, k)
    if k == "ctx" then return cur.ngx_ctx end
    if k == "arg" then return cur.arg end
    if NOT_EMULATED[k] then
      error("ngx." .. tostring(k) .. " is not emulated by kong-emulator (real Kong has it)", 2)
    end
  end,
})

-- Kong 3.9.1's sandbox: kong/tools/kong-lua-sandbox.lua (BASE_ENV, protect_module) -----------------------------
-- kong-lua-sandbox.lua:59-80: the whole base environment (no print, bit, jit, io, table.new/clear/pack/unpack ...)
local BASE_ENV_IDS = [[
_VERSION assert error    ipairs   next pairs
pcall    select tonumber tostring type unpack xpcall

coroutine.create coroutine.resume coroutine.running coroutine.status
coroutine.wrap   coroutine.yield

math.abs   math.acos math.asin  math.atan math.atan2 math.ceil
math.cos   math.cosh math.deg   math.exp  math.fmod  math.floor
math.frexp math.huge math.ldexp math.log  math.log10 math.max
math.min   math.modf math.pi    math.pow  math.rad   math.random
math.sin   math.sinh math.sqrt  math.tan  math.tanh

os.clock os.date os.difftime os.time

string.byte string.char  string.find  string.format string.gmatch
string.gsub string.len   string.lower string.match  string.rep
string.reverse string.sub  string.upper

table.concat table.insert table.maxn table.remove table.sort
]]

local BASE_ENV = {}
BASE_ENV_IDS:gsub("%S+", function(id)
  local m, f = id:match("([^%.]+)%.([^%.]+)")
  if m then
    BASE_ENV[m] = BASE_ENV[m] or {}
    BASE_ENV[m][f] = G[m][f]
  else
    BASE_ENV[id] = G[id]
  end
end)
-- kong-lua-sandbox.lua:91-102 protect_module
for _, name in ipairs({ "coroutine", "math", "os", "string", "table" }) do
  BASE_ENV[name] = setmetatable({}, {
    __index = BASE_ENV[name],
    __newindex = function(_, attr)
      error("Can not modify " .. name .. "." .. attr .. ". Protected by the sandbox.")
    end,
  })
end

local function denied_require(modname)
  return error(("require '%s' not allowed within sandbox"):format(tostring(modname)), -1)
end
local allowed = {}
for _, r in ipairs(requires) do allowed[r] = true end
local provided = { cjson = cjson_mod, ["cjson.safe"] = cjson_mod }
local environment = {
  require = next(allowed) and function(modname)
    if not allowed[modname] then return denied_require(modname) end
    local mod = provided[modname]
    if mod == nil then
      error(("module '%s' not found (kong-emulator provides only cjson and cjson.safe)"):format(modname), 2)
    end
    return mod
  end or denied_require,
}
-- pre-function/_handler.lua:16-19 sandbox_opts.env = { kong, ngx } in front of sandbox.lua's environment
local sandbox_env = setmetatable({ kong = kong, ngx = ngx }, { __index = environment })

-- kong-lua-sandbox.lua:117-169 sandbox.protect: BASE_ENV entries (overridden by the passed env), the env behind
-- them, env._G = env; the chunk runs under pcall and its error is re-raised
local SANDBOX_POS = "/usr/local/share/lua/5.1/kong/tools/kong-lua-sandbox.lua:162: "
local function protect(chunk, env)
  local sandboxed = {}
  for k, v in pairs(BASE_ENV) do
    local pv = env[k]
    if pv ~= nil then sandboxed[k] = pv else sandboxed[k] = v end
  end
  setmetatable(sandboxed, { __index = env })
  sandboxed._G = sandboxed
  local f = assert(load(chunk, nil, "t", sandboxed))
  return function(...)
    local t = { n = select("#", ...), pcall(f, ...) }
    if not t[1] then  -- `error(t[2])` at kong-lua-sandbox.lua:162 prefixes its own position to a string
      if type(t[2]) == "string" then error(SANDBOX_POS .. t[2], 0) end
      error(t[2], 0)
    end
    return unpack(t, 2)
  end
end

-- kong/tools/sandbox.lua:117-142
local function sandbox(chunk)
  if mode == "off" then
    return error("loading of untrusted Lua code disabled because 'untrusted_lua' config option is set to 'off'", -1)
  end
  if mode ~= "sandbox" then
    return assert(load(chunk, nil, "t", setmetatable({}, { __index = G })))
  end
  return protect(chunk, sandbox_env)
end

-- kong/plugins/pre-function/_handler.lua ------------------------------------------------------------------------
local no_op = function() end

local function compile_phase_array(phase_funcs)
  if not phase_funcs or #phase_funcs == 0 then
    return no_op
  end
  local compiled = {}
  for i, func_string in ipairs(phase_funcs) do
    local func = assert(sandbox(func_string))
    local first_run_complete = false
    compiled[i] = function()
      if not first_run_complete then
        first_run_complete = true
        local result = func()
        if type(result) == "function" then
          func = result
          compiled[i] = func
          func()
        end
        compiled[i] = func
      else
        compiled[i] = func
        func()
      end
    end
  end
  return function()
    for _, f in ipairs(compiled) do f() end
  end
end

local PHASES = { "certificate", "rewrite", "access", "header_filter", "body_filter", "log" }

local api = {}

function api.compile(config)
  local runtime_funcs = {}
  for _, phase in ipairs(PHASES) do
    runtime_funcs[phase] = compile_phase_array(config[phase])
  end
  return runtime_funcs
end

-- only compiles: the schema's custom_validator (loadstring, no sandbox, nothing runs)
function api.check(code)
  local _, err = loadstring(code)
  return err
end

-- one event: the phase function in a coroutine (exit yields), the request's tables swapped in; also tells
-- whether kong.ctx.shared and ngx.ctx hold anything afterwards (empty ones need no copying back)
function api.run(fn, shared, plugin_ctx, ngx_ctx, arg)
  cur.shared, cur.plugin, cur.ngx_ctx, cur.arg = shared, plugin_ctx, ngx_ctx, arg
  local co = co_create(fn)
  local ok, err = co_resume(co)
  cur.shared, cur.plugin, cur.ngx_ctx, cur.arg = nil, nil, nil, nil
  if not ok then
    return "error", tostring(err), next(shared) ~= nil, next(ngx_ctx) ~= nil
  end
  if co_status(co) == "suspended" then
    return "exit", nil, next(shared) ~= nil, next(ngx_ctx) ~= nil
  end
  return "ok", nil, next(shared) ~= nil, next(ngx_ctx) ~= nil
end

-- the PDK tables, for custom Lua plugins (lua_plugins.py), which see them as globals
function api.pdk()
  return kong, ngx
end

function api.new_table(...)
  return { ... }
end

function api.type(v)
  return type(v)
end

G.python = nil
return api
"""
