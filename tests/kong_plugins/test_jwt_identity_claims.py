"""sv-jwt hands the parental-control claims sv-rbac and sv-quota need to kong.ctx.shared, shape-checked."""

import pytest
from storyverse_plugins.jwt_auth.gate import identity_of
from storyverse_plugins.jwt_auth.tokens import Verified
from test_jwt_kit import mint
from test_jwt_tokens import check

BASE = {"sub": "c1", "role": "child", "family_id": "f1", "tier": "basic", "exp": 2_000_000_000}


def test_control_claims_are_forwarded():
    claims = BASE | {
        "children": ["c1", "c2"],
        "features": ["text"],
        "allowed_hours": "07:00-19:30",
        "max_content_rating": "TV-Y7",
        "daily_story_limit": 3,
    }
    identity, headers = identity_of(claims)
    assert identity["children"] == ["c1", "c2"] and identity["features"] == ["text"]
    assert identity["allowed_hours"] == "07:00-19:30" and identity["max_content_rating"] == "TV-Y7"
    assert identity["daily_story_limit"] == 3 and identity["authenticated"] is True
    assert headers["X-User-Id"] == "c1"


def test_misshapen_control_claims_are_left_out():
    claims = BASE | {
        "children": "c1",
        "features": [1, 2],
        "allowed_hours": {"from": "07:00"},
        "max_content_rating": ["TV-Y"],
        "daily_story_limit": True,
    }
    identity, _ = identity_of(claims)
    for name in ("children", "features", "allowed_hours", "max_content_rating", "daily_story_limit"):
        assert name not in identity
    assert identity_of(BASE | {"children": [f"c{i}" for i in range(65)]})[0].get("children") is None


@pytest.mark.parametrize("tier", ["basic", "premium", "partner-basic", "partner-premium"])
def test_family_tiers_and_api_key_plans_verify(tier):
    """API-key tokens carry their metering plan as `tier` (auth service apikeys); sv-quota meters by it."""
    assert isinstance(check(mint(tier=tier)), Verified)
