"""decK's offline validation of kong.yml (Debian's `deck` 1.4: `deck validate -s FILE`).

decK checks YAML, its JSON schema of Kong entities and foreign relations; not plugin configs (see
test_kong_yml_schema.py). scripts/ensure-deck.sh installs it when missing (as scripts/ensure-services.sh installs
PostgreSQL and Redis): this test never skips.

decK 1.4 predates plugin `instance_name` (Kong 3.2+) and rejects it ("Additional property instance_name is not
allowed"), although Kong 3.x accepts it: kong.yml uses none (its edge glue is the sv-edge plugin, configured once
per scope), so decK validates the file exactly as Kong gets it.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from kong_yml_support import KONG_YML, REPO


@pytest.fixture(scope="module")
def deck() -> str:
    out = subprocess.run([str(REPO / "scripts" / "ensure-deck.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def validate(deck: str, path) -> subprocess.CompletedProcess:
    return subprocess.run([deck, "validate", "-s", str(path)], capture_output=True, text=True, timeout=60)


def test_deck_validates_kong_yml_as_it_is(deck):
    out = validate(deck, KONG_YML)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda c: c["plugins"].append({"name": "cors", "route": "no-such-route"}), "entity not found"),
        (lambda c: c["services"].append(dict(c["services"][0], routes=[])), "already exists"),
        (lambda c: c["services"][1]["routes"][0].pop("name"), "name is required"),
    ],
    ids=["broken-relation", "duplicate-service", "unnamed-route"],
)
def test_deck_catches_what_it_is_meant_to(deck, tmp_path, mutation, message):
    config = yaml.safe_load(KONG_YML.read_text())
    mutation(config)
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    out = validate(deck, bad)
    assert out.returncode != 0 and message in out.stdout + out.stderr
