"""Age bands and content ratings, youngest / mildest first (the order is the comparison).

A child's token carries ``age_band`` and ``content_rating``; sv-rbac compares them with a route's minimum, the
sample backend with a record's rating, and the auth service derives them from the birth year and the parent's
settings. sv-rbac's config may override the scales per route (these are its defaults).
"""

from __future__ import annotations

AGE_BANDS = ("0-2", "3-5", "6-9", "10-12", "13-15", "16-17")
CONTENT_RATINGS = ("TV-Y", "TV-Y7", "TV-G", "TV-PG", "TV-14")
