from apiflask import APIBlueprint

bp = APIBlueprint("apikeys", __name__, url_prefix="/api/auth/api-keys", tag="API keys")

from . import routes  # noqa: E402,F401
from .guard import refuse_api_key_tokens  # noqa: E402

bp.before_app_request(refuse_api_key_tokens)
