"""STAND-IN ONLY. The request bodies of the public OpenAPI document (docs/openapi/storyverse.json, components
StoryIn, StoryPatch, CharacterIn, UniverseIn, GenerationIn), so the stand-in refuses what the document refuses
(422) instead of storing it and answering with a record the document does not allow.
tests/e2e/test_backend_contract.py checks that these equal the document's.
"""

from __future__ import annotations

from typing import Any

NUMERIC_ID = {"type": "string", "pattern": "^[0-9]+$"}
_STORY = {
    "title": {"type": "string", "minLength": 1, "maxLength": 200},
    "text": {"type": "string"},
    "universe_id": NUMERIC_ID,
    "character_ids": {"type": "array", "items": NUMERIC_ID, "maxItems": 25},
}
_NAMED = {"name": {"type": "string", "minLength": 1, "maxLength": 100}, "description": {"type": "string"}}

STORY_IN: dict[str, Any] = {"type": "object", "properties": _STORY, "required": ["title"]}
STORY_PATCH: dict[str, Any] = {"type": "object", "properties": _STORY}
CHARACTER_IN: dict[str, Any] = {
    "type": "object",
    "properties": {**_NAMED, "universe_id": NUMERIC_ID},
    "required": ["name"],
}
UNIVERSE_IN: dict[str, Any] = {"type": "object", "properties": _NAMED, "required": ["name"]}
GENERATION_IN: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 2000}, "story_id": NUMERIC_ID},
    "required": ["prompt"],
}

# (collection, method) -> schema; the generation service's collections are its kinds
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("stories", "POST"): STORY_IN,
    ("stories", "PUT"): STORY_IN,
    ("stories", "PATCH"): STORY_PATCH,
    ("characters", "POST"): CHARACTER_IN,
    ("universes", "POST"): UNIVERSE_IN,
    **{(kind, "POST"): GENERATION_IN for kind in ("text", "image", "audio")},
}
