-- sv-edge configuration: configured once globally (the guard's default, the identity headers to strip), with
-- per-route instances where a route differs (public routes' marks, version retirement, docs, OAuth errors).
-- Kong runs only the most specific instance of a plugin in access/header_filter/body_filter/log, and only the
-- global one in rewrite (kong/runloop/plugins_iterator.lua), so what rewrite does lives in the global instance.
local typedefs = require "kong.db.schema.typedefs"

local MARKS = { "sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log" }

return {
  name = "sv-edge",
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { require = {
              description = "Plugins whose decision mark this route requires; a missing one answers 503 "
                .. "plugin_unavailable (the plugin's server is dead, hung or crashed: Kong let the request on).",
              type = "set", default = {}, elements = { type = "string", one_of = MARKS },
          } },
          { strip_headers = {
              description = "Client request headers removed in rewrite, before any plugin or cache key sees "
                .. "them (also their '_' spellings). Only the global instance runs rewrite.",
              type = "array", default = {}, elements = { type = "string", match = "^[%w%-]+$" },
          } },
          { strip_header_prefixes = {
              description = "Client request headers with any of these prefixes are removed in rewrite too.",
              type = "array", default = {}, elements = { type = "string", match = "^[%w%-]+$" },
          } },
          { strip_version = {
              description = "Upstream path /api/v<N>/x becomes /api/x (backends never see the API version).",
              type = "boolean", default = true,
          } },
          { retry_after = {
              description = "Retry-After seconds on the guard's 503.",
              type = "integer", default = 5, between = { 1, 3600 },
          } },
          { problem_type_base = {
              description = "RFC 9457 `type` URIs are this base plus the code (underscores as dashes).",
              type = "string", default = "https://docs.storyverse.example/problems/",
          } },
          { pass_upstream_errors = {
              description = "Leave the upstream's own error bodies as they are (OAuth's RFC 6749 errors); the "
                .. "gateway's own errors are still problem documents.",
              type = "boolean", default = false,
          } },
          { deprecation = {
              description = "This route's API version is deprecated: Deprecation (RFC 9745), Sunset (RFC 8594) "
                .. "and Link headers on every response.",
              type = "record", required = false,
              fields = {
                { at = { description = "Deprecation date, Unix seconds.", type = "integer", required = true } },
                { sunset = { description = "Sunset date as an HTTP-date.", type = "string", required = true } },
                { link = { description = "The Link header value.", type = "string", required = true } },
              },
          } },
          { gone = {
              description = "This route's API version is retired: 410 Gone with this detail.",
              type = "string", required = false,
          } },
          { sunset = {
              description = "Sunset header (an HTTP-date) on a retired version's 410.",
              type = "string", required = false,
          } },
          { serve = {
              description = "Answer 200 with a file baked into the image (API docs); nothing is proxied.",
              type = "record", required = false,
              fields = {
                { file = {
                    description = "Path of the file; relative paths are under the Lua root's ../docs/openapi "
                      .. "(the image's /opt/storyverse/docs/openapi).",
                    type = "string", required = true, match = "^[%w%-%./_]+$", not_match = "%.%.",
                } },
                { headers = {
                    description = "Response headers sent with the file (Content-Type, Cache-Control, ...).",
                    type = "map", required = true,
                    keys = { type = "string" }, values = { type = "string" },
                } },
              },
          } },
          { redact_query_args = {
              description = "Query arguments whose values the access log (log serializers) shows as REDACTED; "
                .. "the log also gets request_id and user_id, and never cookies.",
              type = "array", default = {}, elements = { type = "string", match = "^[%w_%-]+$" },
          } },
          { respond = {
              description = "Answer with this status and no body after the guard (e.g. 204 for a CORS route).",
              type = "integer", required = false, between = { 200, 599 },
          } },
        },
    } },
  },
}
