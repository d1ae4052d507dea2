"""The public API's OpenAPI 3.1 document and its browsable page (docs/openapi/), from the gateway's route table.

One document for everything the gateway routes (storyverse_gateway_config.routes: the 16 seed endpoints, the auth
service's, OAuth, the docs themselves), with the gateway's paths (/api/v1/...), its security (bearer JWT; public
routes say `security: []`), its limits (RateLimit/X-Quota headers, 429) and its one error format (RFC 9457
problem documents with `code` and `request_id`). Where each part comes from:

* the auth service's endpoints: its own served document (apiflask), fetched in-process through its app factory
  and `test_client()`, paths rewritten from the service's (/api/auth/...) to the gateway's (/api/v1/auth/...);
  only the routed operations are kept (admin, usage, API keys and ops endpoints are not public);
* stories, characters, universes and generation: the schemas in `schemas` (the contract the services are held to;
  the sample backend plays them locally);
* OAuth (form-encoded, answered in OAuth's own error format, so the provider keeps it out of its document) and
  the docs endpoints: written in `operations`.

Every operation also carries the gateway's facts as extensions (`x-storyverse-route`, `-roles`, `-rate-limits`,
`-daily-quota`, `-cached`); tests/e2e/test_public_api_docs.py checks them against kong.yml in both directions.
"""

from storyverse_gateway_config.openapi.document import build, render_json
from storyverse_gateway_config.openapi.html_page import render_html

__all__ = ["build", "render_html", "render_json"]
