-- sv-edge: one error format (RFC 9457) for every response with status >= 400 that leaves Kong: Kong's own errors
-- (no route, 502/503/504, 413, 500, a plugin's plain exit; kong.conf's error_template_* already made them problem
-- documents without `status`), a backend's error that is not a problem document (replaced: a 4xx keeps a plain
-- "message"/"detail" string, a 5xx never leaks its body), and a backend's problem document without `code` /
-- `request_id` (patched). Our plugins' own problem documents pass unchanged. Bodies arrive in any number of chunks:
-- the marked ones are buffered (at most 64 KiB) until eof. `replace` (header_filter) swaps a response for one of
-- sv-edge's own documents (`document`, also the body of its exits).
-- request_id: kong.ctx.shared.sv_request_id (sv-request-id's X-Request-Id) else Kong's $kong_request_id; only ids
-- that need no JSON escaping are echoed. Cost on a 2xx/3xx: one status read per phase, nothing allocated.
local kong, ngx, type, tostring = kong, ngx, type, tostring
local find, match, sub, gsub, lower = string.find, string.match, string.sub, string.gsub, string.lower
local concat = table.concat

local PROBLEM = "application/problem+json"
local MAX_BUFFER = 65536 -- a larger error body is passed through (problem documents) or dropped (the rest)
local NO_ROUTE = "no Route matched with those values"

local TITLES = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [422] = "Unprocessable Content", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
local CODES = {
  [400] = "bad_request", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
  [405] = "method_not_allowed", [406] = "not_acceptable", [408] = "request_timeout", [409] = "conflict",
  [410] = "gone", [411] = "length_required", [412] = "precondition_failed", [413] = "payload_too_large",
  [414] = "uri_too_long", [415] = "unsupported_media_type", [422] = "unprocessable_content",
  [428] = "precondition_required", [429] = "too_many_requests", [431] = "request_header_fields_too_large",
}
-- Kong's own 5xx (kong/error_handlers.lua, the runloop's kong.response.error)
local GATEWAY_CODES = {
  [500] = "gateway_error", [502] = "bad_gateway", [503] = "upstream_unavailable", [504] = "upstream_timeout",
}

local function code_for(status, gateway, detail)
  if gateway then
    if status == 404 and detail == NO_ROUTE then
      return "route_not_found"
    end
    local code = GATEWAY_CODES[status]
    if code then
      return code
    end
  end
  return CODES[status] or (status >= 500 and (gateway and "gateway_error" or "upstream_error")) or "client_error"
end

local function head(base, status, code)
  return '{"type":"' .. base .. gsub(code, "_", "-") .. '","title":"' .. (TITLES[status] or "Error")
    .. '","status":' .. tostring(status) .. ',"code":"' .. code .. '"'
end

-- only ids that need no JSON escaping
local function request_id()
  local id = kong.ctx.shared.sv_request_id
  if type(id) == "string" and #id <= 128 and not find(id, "[^%w%-%._:]") then
    return id
  end
  id = ngx.var.kong_request_id
  if type(id) == "string" and #id <= 128 and not find(id, "[^%w%-]") then
    return id
  end
  return ""
end

-- a plain JSON string member that is safe to copy as it is: no quote, backslash or control character
local function string_member(body, name)
  local value = match(body, '"' .. name .. '"%s*:%s*"([^"\\%c]*)"')
  if value and #value <= 500 then
    return value
  end
end

local function render(base, mode, status, body)
  if mode == "patch" then -- a backend's problem document: add only what is missing
    local add = ""
    if not find(body, '"code"%s*:') then
      add = add .. ',"code":"' .. code_for(status, false) .. '"'
    end
    if not find(body, '"request_id"%s*:') then
      add = add .. ',"request_id":"' .. request_id() .. '"'
    end
    local last = match(body, "^.*()}%s*$")
    if add == "" or not last or not find(body, "^%s*{") then
      return body
    end
    if find(sub(body, 1, last - 1), "^%s*{%s*$") then -- an empty object: no leading comma
      add = sub(add, 2)
    end
    return sub(body, 1, last - 1) .. add .. sub(body, last)
  end
  local gateway = mode == "gateway"
  local detail
  if gateway or status < 500 then
    detail = string_member(body, "detail") or string_member(body, "message")
  end
  if not detail then
    detail = gateway and "The gateway could not complete this request."
      or ("The upstream service responded with " .. tostring(status) .. ".")
  end
  return head(base, status, code_for(status, gateway, detail)) .. ',"detail":"' .. detail .. '","request_id":"'
    .. request_id() .. '"}'
end

local function header_filter(conf)
  local status = kong.response.get_status()
  if status < 400 or kong.request.get_method() == "HEAD" then
    return
  end
  local source = kong.response.get_source()
  if source == "service" and conf.pass_upstream_errors then -- OAuth's own error format
    return
  end
  local content_type = ngx.header["Content-Type"]
  if type(content_type) == "table" then
    content_type = content_type[1]
  end
  if type(content_type) == "string" and find(lower(content_type), PROBLEM, 1, true) then
    if source == "service" and not ngx.header["Content-Encoding"] then
      kong.ctx.plugin.sv_problem = "patch"
      ngx.header["Content-Length"] = nil
    end
    return
  end
  kong.ctx.plugin.sv_problem = source == "service" and "upstream" or "gateway"
  ngx.header["Content-Type"] = PROBLEM
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Encoding"] = nil
end

-- a document sv-edge answers itself (the guard's 503, a retired version's 410, docs_unavailable)
local function document(base, status, code, detail)
  local id = request_id()
  return '{"type":"' .. base .. gsub(code, "_", "-") .. '","title":"' .. (TITLES[status] or "Error") .. '","status":'
    .. tostring(status) .. ',"detail":"' .. detail .. '","code":"' .. code .. '"'
    .. (id ~= "" and (',"request_id":"' .. id .. '"') or "") .. "}"
end

-- header_filter: the response on its way out becomes sv-edge's own document (its status is already set); the body
-- that was there is dropped in body_filter
local function replace(conf, status, code, detail)
  ngx.header["Content-Type"] = PROBLEM
  ngx.header["Content-Length"] = nil
  ngx.header["Content-Encoding"] = nil
  if kong.request.get_method() ~= "HEAD" then
    local plugin_ctx = kong.ctx.plugin
    plugin_ctx.sv_problem = "replace"
    plugin_ctx.sv_problem_document = document(conf.problem_type_base, status, code, detail)
  end
end

local function body_filter(conf)
  if kong.response.get_status() < 400 then -- before kong.ctx.plugin: Kong creates that table on first use
    return
  end
  local plugin_ctx = kong.ctx.plugin
  local mode = plugin_ctx.sv_problem
  if not mode then
    return
  end
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  if mode == "pass" then -- a problem document too large to patch: as it came
    return
  end
  if mode == "replace" then
    ngx.arg[1] = eof and plugin_ctx.sv_problem_document or nil
    return
  end
  local buffer = plugin_ctx.sv_problem_buffer
  if type(chunk) == "string" and chunk ~= "" then
    if not buffer then
      buffer = { n = 0, size = 0 }
      plugin_ctx.sv_problem_buffer = buffer
    end
    if buffer.size + #chunk <= MAX_BUFFER then
      buffer.n, buffer.size = buffer.n + 1, buffer.size + #chunk
      buffer[buffer.n] = chunk
    elseif mode == "patch" then
      plugin_ctx.sv_problem = "pass"
      ngx.arg[1] = concat(buffer, "", 1, buffer.n) .. chunk
      return
    end
  end
  if not eof then
    ngx.arg[1] = nil
    return
  end
  plugin_ctx.sv_problem, plugin_ctx.sv_problem_buffer = nil, nil
  local body = buffer and concat(buffer, "", 1, buffer.n) or ""
  ngx.arg[1] = render(conf.problem_type_base, mode, kong.response.get_status(), body)
end


local _M = {}

function _M.request_id()
  local id = request_id()
  return id ~= "" and id or nil
end

_M.document = document
_M.replace = replace
_M.header_filter = header_filter
_M.body_filter = body_filter
_M.titles = TITLES

return _M
