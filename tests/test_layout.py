"""The repository's packages import and declare the plugin order docs/architecture.md §1 fixes, and no service
reaches into another service's package: what they share is storyverse_contracts (and storyverse_plans)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from storyverse_plugins import PRIORITIES

REPO = Path(__file__).resolve().parents[1]
SHARED = {"storyverse_contracts", "storyverse_plans"}
KONG_SIDE = {"kong_emulator", "kong_pluginserver"}  # the Kong stand-in and the plugin runtime: none of our code
# Which of the repository's own packages each package may import (deny by default: a package not named here, such
# as a new service, may import only itself and the shared packages).
ALLOWED = {
    "storyverse_contracts": set(),  # dependency-free: the standard library only (test below)
    "storyverse_plans": {"storyverse_contracts"},
    "storyverse_servicekit": set(),  # Flask-service plumbing (health routes): none of our code
    "storyverse_process_metrics": set(),  # process_* metrics of gunicorn processes, read from /proc: none of our code
    "storyverse_auth": SHARED | {"storyverse_servicekit", "storyverse_process_metrics"},
    "storyverse_ratelimit": SHARED | {"storyverse_servicekit", "storyverse_process_metrics"},
    "storyverse_plugins": SHARED | {"kong_pluginserver"},
    "sample_backend": SHARED,
    # the build tool, not a service: it renders kong.yml and reads each service's OpenAPI document from its factory
    "storyverse_gateway_config": SHARED | {"storyverse_auth", "storyverse_ratelimit"},
}


def test_plugin_priorities_run_auth_then_rbac_then_quota():
    order = sorted(PRIORITIES, key=PRIORITIES.get, reverse=True)
    assert order == ["sv-request-id", "sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log", "sv-expand"]


def own_packages() -> dict[str, Path]:
    """Every top-level package of the repository (``<project>/src/<package>/``)."""
    return {p.parent.name: p.parent for p in REPO.glob("*/src/*/__init__.py")}


def imported_roots(source: str) -> set[str]:
    """Top-level names of every absolute import in ``source``, including imports inside functions."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def files_of(package: str, root: Path) -> list[Path]:
    files = sorted(root.rglob("*.py"))
    if package == "storyverse_plugins":  # the plugin servers' entry files belong to the plugins
        files += sorted((REPO / "kong-plugins" / "plugins").glob("*.py"))
    return files


def violations(package: str, files: list[Path], ours: set[str]) -> list[str]:
    allowed = ALLOWED.get(package, SHARED) | {package}
    found = []
    for path in files:
        for name in sorted((imported_roots(path.read_text()) & ours) - allowed):
            found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(set(own_packages()) - KONG_SIDE))
def test_a_service_imports_no_other_services_package(package):
    packages = own_packages()
    assert violations(package, files_of(package, packages[package]), set(packages)) == []


def test_the_kong_side_imports_none_of_our_product_code():
    packages = own_packages()
    ours = set(packages)
    for package in sorted(KONG_SIDE):
        found = [
            f"{path.relative_to(REPO)} imports {name}"
            for path in files_of(package, packages[package])
            for name in sorted((imported_roots(path.read_text()) & ours) - {package})
        ]
        assert found == []


def test_the_contracts_are_dependency_free():
    root = own_packages()["storyverse_contracts"]
    for path in root.rglob("*.py"):
        foreign = (
            imported_roots(path.read_text()) - set(sys.stdlib_module_names) - {"__future__", "storyverse_contracts"}
        )
        assert foreign == set(), path


def test_the_check_catches_a_service_reaching_into_another(tmp_path):
    reach = tmp_path / "views.py"
    reach.write_text("def f():\n    from storyverse_plugins.quota import abuse\n    import storyverse_ratelimit.keys\n")
    clean = tmp_path / "clean.py"
    clean.write_text("from storyverse_contracts.keys import revoked_sid_key\nfrom . import sibling\n")
    ours = set(own_packages())
    assert violations("storyverse_auth", [reach, clean], ours) == [
        f"{reach} imports storyverse_plugins",
        f"{reach} imports storyverse_ratelimit",
    ]
    assert violations("sample_backend", [clean], ours) == []
