"""Where the generated files live in the repository (this package is installed editable from gateway-config/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
KONG_YML = REPO / "kong.yml"
API_MD = REPO / "docs" / "api.md"
# The public API documentation (storyverse_gateway_config.openapi writes both; baked into the Kong image, sv-edge
# serves them).
OPENAPI_DIR = REPO / "docs" / "openapi"
OPENAPI_JSON = OPENAPI_DIR / "storyverse.json"
DOCS_HTML = OPENAPI_DIR / "index.html"
