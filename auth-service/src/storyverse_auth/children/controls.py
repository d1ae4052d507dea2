"""Parental controls: the scales sv-rbac and sv-quota read, and pure rules over them (no I/O, no clock).

Age bands and content ratings are the shared scales (``storyverse_contracts.ratings``, sv-rbac's defaults). A birth year
gives the age the child has *surely* reached (``year - birth_year - 1``: the birthday may still be ahead), so a band
is never older than the child. Each band has a ceiling rating; the parent's ``max_content_rating`` can only lower it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from storyverse_contracts.ratings import AGE_BANDS, CONTENT_RATINGS
from storyverse_contracts.tiers import DEFAULT_TIER, FAMILY_TIERS
from storyverse_plans import DEFAULT_PLANS

BAND_RATING = {"0-2": "TV-Y", "3-5": "TV-Y", "6-9": "TV-Y7", "10-12": "TV-G", "13-15": "TV-PG", "16-17": "TV-14"}
FEATURES = ("text", "image", "audio")
# The family plans' daily stories (sv-quota meters the same numbers, storyverse_plans).
TIER_DAILY_STORY_LIMIT = {p.tier: p.daily for p in DEFAULT_PLANS if p.tier in FAMILY_TIERS}
MAX_CHILD_AGE = 17
NO_LIMIT = "00:00-24:00"
DEFAULT_ALLOWED_HOURS = "07:00-20:00"
DEFAULT_FEATURES = ("text",)
DAY_MINUTES = 24 * 60

_WINDOW = re.compile(r"\A([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z")


def age_in(birth_year: int, year: int) -> int:
    """The age the child has reached for certain during ``year`` (never negative)."""
    return max(0, year - birth_year - 1)


def birth_year_allowed(birth_year: int, year: int) -> bool:
    return year - MAX_CHILD_AGE - 1 <= birth_year <= year


def age_band(birth_year: int, year: int) -> str:
    age = min(age_in(birth_year, year), MAX_CHILD_AGE)
    for band in AGE_BANDS:
        low, high = (int(part) for part in band.split("-"))
        if low <= age <= high:
            return band
    raise AssertionError("the bands cover 0-17")  # pragma: no cover


def rank(rating: str) -> int:
    return CONTENT_RATINGS.index(rating)


def strictest(*ratings: str) -> str:
    return min(ratings, key=rank)


def tier_limit(tier: str) -> int:
    return TIER_DAILY_STORY_LIMIT.get(tier, TIER_DAILY_STORY_LIMIT[DEFAULT_TIER])


def parse_window(text: str) -> tuple[int, int] | None:
    """(start, end) minutes of an ``HH:MM-HH:MM`` window (may cross midnight), or None when malformed or empty."""
    match = _WINDOW.match(text)
    if match is None:
        return None
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if start > DAY_MINUTES or end > DAY_MINUTES or start == end or start == DAY_MINUTES:
        return None
    return start, end


def window_minutes(text: str) -> frozenset[int]:
    """The minutes of the day a window allows."""
    window = parse_window(text)
    if window is None:
        return frozenset()
    start, end = window
    if start < end:
        return frozenset(range(start, end))
    return frozenset(range(start, DAY_MINUTES)) | frozenset(range(0, end))


def ordered_features(features: Iterable[str]) -> list[str]:
    chosen = set(features)
    return [f for f in FEATURES if f in chosen]


@dataclass(frozen=True)
class Controls:
    """A child's parental controls as stored (the parent's settings, before the age and tier caps)."""

    max_content_rating: str
    daily_story_limit: int
    allowed_hours: str
    features: tuple[str, ...]

    def tightened_by(self, new: Controls) -> bool:
        """Does ``new`` take anything away that these controls allowed?"""
        return (
            rank(new.max_content_rating) < rank(self.max_content_rating)
            or new.daily_story_limit < self.daily_story_limit
            or bool(set(self.features) - set(new.features))
            or bool(window_minutes(self.allowed_hours) - window_minutes(new.allowed_hours))
        )


@dataclass(frozen=True)
class ChildClaims:
    """What a child's access token says (the values the gateway enforces as they are)."""

    age_band: str
    content_rating: str
    max_content_rating: str
    allowed_hours: str
    features: list[str]
    daily_story_limit: int


def child_claims(birth_year: int, year: int, controls: Controls, tier: str) -> ChildClaims:
    band = age_band(birth_year, year)
    return ChildClaims(
        age_band=band,
        content_rating=strictest(BAND_RATING[band], controls.max_content_rating),
        max_content_rating=controls.max_content_rating,
        allowed_hours=controls.allowed_hours,
        features=ordered_features(controls.features),
        daily_story_limit=min(controls.daily_story_limit, tier_limit(tier)),
    )
