-- StoryVerse fail-closed guard: the `access` chunk of a bundled `post-function` (priority -1000, after sv-jwt,
-- sv-rbac and sv-quota). Python plugins fail open in Kong (a dead or hung plugin server lets the request
-- through), so this Kong-native check needs no plugin server: unless sv-jwt marked the request authenticated in
-- kong.ctx.shared.sv_identity, it answers 503 with an RFC 9457 problem document.
-- Contract (sv-jwt): type(kong.ctx.shared.sv_identity) == "table" and .authenticated == true.
-- It also applies the upstream identity headers sv-jwt (`headers_in_guard`) left in the identity: `upstream`
-- {name = value} are set, `clear` {names} (client-sent identity headers) removed. Kong builds the upstream request
-- after the access phase, so setting them here (after sv-rbac and sv-quota) costs no plugin-server round trip.
-- Runs in Kong's default sandbox (untrusted_lua = sandbox): no require, no cjson. Everything is built once when
-- the chunk compiles; the returned function is what runs per request, allocation-free when the request passes.
local type = type
local pairs = pairs
local kong = kong
local ngx = ngx

local HEADERS = { ["Content-Type"] = "application/problem+json" }
local BODY_HEAD = '{"type":"https://docs.storyverse.example/problems/gateway-auth-unavailable",'
  .. '"title":"Service Unavailable","status":503,'
  .. '"detail":"The gateway cannot verify this request right now. Please try again shortly.",'
  .. '"code":"gateway_auth_unavailable"'
local BODY_NO_ID = BODY_HEAD .. "}"

-- only on the failure path: the request id sv-request-id chose, else Kong's own; never anything that needs escaping
local function request_id()
  local id = kong.ctx.shared.sv_request_id
  if type(id) == "string" and #id <= 128 and not id:find("[^%w%-%._:]") then
    return id
  end
  id = ngx.var.kong_request_id
  if type(id) == "string" and #id <= 128 and not id:find("[^%w%-]") then
    return id
  end
end

return function()
  local identity = kong.ctx.shared.sv_identity
  if type(identity) == "table" and identity.authenticated == true then
    local upstream, clear = identity.upstream, identity.clear
    if type(upstream) == "table" then
      local set_header = kong.service.request.set_header
      for name, value in pairs(upstream) do
        local kind = type(value)
        if kind == "string" or kind == "number" then
          set_header(name, value)
        end
      end
    end
    if type(clear) == "table" then
      local clear_header = kong.service.request.clear_header
      for i = 1, #clear do
        clear_header(clear[i])
      end
    end
    return
  end
  kong.log.err("fail-closed guard: sv-jwt did not authenticate this request (plugin server down?): 503")
  local id = request_id()
  local body = id and (BODY_HEAD .. ',"request_id":"' .. id .. '"}') or BODY_NO_ID
  return kong.response.exit(503, body, HEADERS)
end
