"""The repository's packages import and declare the plugin order docs/architecture.md §1 fixes."""

from storyverse_plugins import PRIORITIES


def test_plugin_priorities_run_auth_then_rbac_then_quota():
    order = sorted(PRIORITIES, key=PRIORITIES.get, reverse=True)
    assert order == ["sv-request-id", "sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log", "sv-expand"]
