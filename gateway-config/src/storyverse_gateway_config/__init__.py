"""The StoryVerse gateway's configuration: the route table, kong.yml, the OpenAPI document and its HTML page.

    sv-gateway-config render                                   # rewrite kong.yml, docs/openapi/*, docs/api.md
    sv-gateway-config check                                    # exit 1 when any of them is out of date
    sv-gateway-config render --settings prod.yaml -o kong.prod.yml   # a deployment's kong.yml

(`python -m storyverse_gateway_config ...` is the same command.) The settings file is documented key by key in
gateway-config/examples/production.yaml.
"""

from storyverse_gateway_config.kong import build, render
from storyverse_gateway_config.settings import LOCAL, SettingsError, load_settings

__all__ = ["LOCAL", "SettingsError", "build", "load_settings", "render"]
