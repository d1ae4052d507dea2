"""kong.yml (Kong 3.x, DB-less, format 3.0) from the route table and a deployment's settings."""

from storyverse_gateway_config.kong.document import build
from storyverse_gateway_config.kong.yaml_text import render

__all__ = ["build", "render"]
