"""Operating the chart for real: mail goes out over SMTP with TLS and a login from an existing Secret, links point at
public https URLs (the auth service refuses the rest at start)."""

from __future__ import annotations

import pytest
from helm_support import containers, documents, find


@pytest.fixture
def default(renders):
    return documents(renders["default-values"])


def _env(doc: dict, container: str) -> dict[str, dict]:
    return {e["name"]: e for e in containers(doc)[container]["env"]}


@pytest.mark.parametrize("values", ["default-values", "external-redis-values", "existing-secrets-values"])
def test_every_render_sends_mail_over_tls_smtp_never_the_outbox(renders, values):
    env = _env(find(documents(renders[values]), "Deployment", "auth"), "auth")
    assert env["MAIL_BACKEND"]["value"] == "smtp"
    assert env["SMTP_SECURITY"]["value"] in ("starttls", "tls")
    for name in ("RESET_URL", "FAMILY_INVITE_URL", "DEVICE_VERIFICATION_URI"):
        assert env[name]["value"].startswith("https://") and "localhost" not in env[name]["value"]


def test_smtp_login_comes_from_the_existing_secret(default):
    env = _env(find(default, "Deployment", "auth"), "auth")
    assert env["SMTP_HOST"]["value"] == "email-smtp.eu-west-1.amazonaws.com"
    assert env["SMTP_PORT"]["value"] == "587"
    assert env["SMTP_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "storyverse-ses-smtp", "key": "smtp-username"}
    assert env["SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "storyverse-ses-smtp", "key": "smtp-password"}
    assert "value" not in env["SMTP_PASSWORD"]


def test_the_migration_job_runs_with_the_same_mail_settings(default):
    job = _env(find(default, "Job", "migrations"), "migrate")
    assert job["MAIL_BACKEND"]["value"] == "smtp"
    assert job["RESET_URL"] == _env(find(default, "Deployment", "auth"), "auth")["RESET_URL"]
