-- StoryVerse public route (no identity required): the `access` chunk of the route's own post-function, which
-- replaces the global fail-closed guard. Identity headers reach a backend only from sv-jwt: with a verified token
-- (sv-jwt anonymous mode still verifies one) it applies the identity's `upstream`/`clear` headers like the guard;
-- without one it removes every client-sent identity header: the fixed names, their `_` spellings and the X-Sv-
-- prefix (sv-jwt's `headers_in_guard` leaves this to the post-function: zero plugin-server round trips).
local type = type
local pairs = pairs
local kong = kong
local lower, gsub, sub = string.lower, string.gsub, string.sub

local NAMES = { "X-User-Id", "X-User-Role", "X-Family-Id", "X-Account-Tier", "X-Content-Rating" }
local IDENTITY = {}
for i = 1, #NAMES do
  IDENTITY[lower(NAMES[i])] = true
end
local PREFIX = "x-sv-"
local MAX_HEADERS = 100 -- sv-jwt refuses (400) a request with more header lines than this

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
  local clear_header = kong.service.request.clear_header
  for i = 1, #NAMES do
    clear_header(NAMES[i])
  end
  local headers = kong.request.get_headers(MAX_HEADERS)
  if type(headers) ~= "table" then
    return
  end
  for name in pairs(headers) do
    if type(name) == "string" then
      local norm = (gsub(lower(name), "_", "-"))
      if IDENTITY[norm] or sub(norm, 1, #PREFIX) == PREFIX then
        clear_header(name)
      end
    end
  end
end
