"""tests/e2e's journeys and kong.yml checks, unchanged, against real Kong (the `stack`/`backend` fixtures of this
directory's conftest). A difference between this run and `make test` is an emulator bug to fix."""

from __future__ import annotations

from test_journeys import (
    test_a_family_evening,
    test_a_forged_token_never_reaches_a_backend,
    test_a_premium_family_gets_twenty_stories,
    test_refresh_token_reuse_kills_the_session,
    test_the_auth_cli_runs_against_the_same_database,
)
from test_kong_yml_smoke import (
    test_a_non_preflight_options_never_reaches_a_backend,
    test_an_authenticated_route_without_a_token_is_401,
    test_an_unlisted_path_gets_kongs_404,
)

__all__ = [
    "test_a_family_evening",
    "test_a_forged_token_never_reaches_a_backend",
    "test_a_non_preflight_options_never_reaches_a_backend",
    "test_a_premium_family_gets_twenty_stories",
    "test_an_authenticated_route_without_a_token_is_401",
    "test_an_unlisted_path_gets_kongs_404",
    "test_refresh_token_reuse_kills_the_session",
    "test_the_auth_cli_runs_against_the_same_database",
]
