"""Settings `upstream_ca`: https services verify their upstream (tls_verify) against a CA embedded as Kong's
`ca_certificates` entity; plain http services are left alone; a file that is not one certificate is refused."""

from __future__ import annotations

import pytest
import yaml
from kong_emulator.listeners.tls import local_ca
from storyverse_gateway_config import SettingsError, build, load_settings, render


def test_https_services_get_tls_verify_and_the_ca(tmp_path):
    ca = local_ca(tmp_path).ca_cert
    settings = load_settings(
        overrides={
            "services": {"auth": "https://127.0.0.1:9000", "stories": "https://127.0.0.1:9101"},
            "upstream_ca": str(ca),
        }
    )
    config = yaml.safe_load(render(settings))
    (entity,) = config["ca_certificates"]
    assert entity["cert"] == ca.read_text()
    by_name = {s["name"]: s for s in config["services"]}
    for name in ("auth", "stories"):
        assert by_name[name]["tls_verify"] is True and by_name[name]["ca_certificates"] == [entity["id"]]
    assert "tls_verify" not in by_name["universes"]  # still http://
    assert build(settings)["ca_certificates"][0]["id"] == entity["id"]  # stable across renders


def test_without_a_ca_https_services_still_verify():
    config = build(load_settings(overrides={"services": {"auth": "https://auth.internal:443"}}))
    auth = next(s for s in config["services"] if s["name"] == "auth")
    assert auth["tls_verify"] is True and "ca_certificates" not in auth and "ca_certificates" not in config


def test_a_bundle_or_a_missing_file_is_refused(tmp_path):
    ca = local_ca(tmp_path).ca_cert
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(ca.read_text() * 2)
    with pytest.raises(SettingsError, match="exactly one PEM certificate"):
        load_settings(overrides={"upstream_ca": str(bundle)})
    with pytest.raises(SettingsError, match="upstream_ca"):
        load_settings(overrides={"upstream_ca": str(tmp_path / "missing.pem")})
