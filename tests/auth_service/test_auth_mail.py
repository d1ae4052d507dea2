"""Mail over real SMTP (aiosmtpd with STARTTLS and AUTH on a free port), and the production refusals that keep
mail from vanishing: the in-memory outbox, plain-text SMTP and localhost links."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from smtp_support import PASSWORD, USERNAME, SMTPServer
from storyverse_auth import create_app, mailer
from storyverse_auth.config import DEV_KEY_ENCRYPTION_KEY, ConfigError, production_problems
from storyverse_auth.mailer import Mail, SMTPMailer, SMTPSettings

AUTH_DIR = Path(__file__).resolve().parents[2] / "auth-service"
PROD_KEY = "cHJvZHVjdGlvbi1rZXktZW5jcnlwdGlvbi1rZXktMzI="
FIT = {
    "KEY_ENCRYPTION_KEY": PROD_KEY,
    "MAIL_BACKEND": "smtp",
    "SMTP_SECURITY": "starttls",
    "RESET_URL": "https://app.storyverse.example/reset-password?token={token}",
    "FAMILY_INVITE_URL": "https://app.storyverse.example/join-family?token={token}",
    "DEVICE_VERIFICATION_URI": "https://app.storyverse.example/device",
}


@pytest.fixture
def smtp(tmp_path):
    with SMTPServer(tmp_path) as server:
        yield server


def settings(server: SMTPServer, **overrides) -> SMTPSettings:
    base = {"host": "127.0.0.1", "port": server.port, "sender": "StoryVerse <no-reply@storyverse.example>"}
    base |= {"username": USERNAME, "password": PASSWORD, "ca_file": str(server.ca_file)}
    return SMTPSettings(**(base | overrides))


def test_mail_goes_over_starttls_with_login(smtp):
    SMTPMailer(settings(smtp)).send(Mail("parent@example.com", "Reset your password", "https://x/reset?token=t"))
    got = smtp.wait()
    assert (got.login, got.tls) == (USERNAME, True)
    assert got.recipients == ["parent@example.com"]
    assert got.message["Subject"] == "Reset your password"
    assert "token=t" in got.message.get_payload()


@pytest.mark.parametrize(
    "overrides, error_type",
    [
        ({"password": "wrong"}, "SMTPAuthenticationError"),
        ({"ca_file": ""}, "SSLCertVerificationError"),  # self-signed, not in the system store: refuse
        ({"host": "localhost.invalid"}, "gaierror"),
    ],
)
def test_a_failed_delivery_is_logged_without_the_body_and_nothing_is_sent(smtp, caplog, overrides, error_type):
    caplog.set_level(logging.INFO, logger="storyverse_auth.mailer")
    SMTPMailer(settings(smtp, **overrides)).send(Mail("parent@example.com", "Reset", "secret-link"))
    assert smtp.handler.received == []
    [record] = [r for r in caplog.records if r.getMessage() == "mail delivery failed"]
    assert record.error_type == error_type
    assert "secret-link" not in caplog.text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_starttls_mode_never_falls_back_to_plain_text(tmp_path, caplog):
    with SMTPServer(tmp_path, starttls=False) as plain:
        SMTPMailer(settings(plain)).send(Mail("parent@example.com", "Reset", "secret-link"))
        assert plain.handler.received == []
    [record] = [r for r in caplog.records if r.getMessage() == "mail delivery failed"]
    assert record.error_type == "SMTPNotSupportedError"


def test_unknown_security_mode_is_refused():
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        SMTPMailer(SMTPSettings("h", 587, "s", security="maybe"))


def test_password_reset_mail_reaches_the_smtp_server(app, client, auth, smtp):
    app.config.update(
        MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_USERNAME=USERNAME,
        SMTP_PASSWORD=PASSWORD, SMTP_CA_FILE=str(smtp.ca_file), RESET_URL=FIT["RESET_URL"],
    )  # fmt: skip
    mailer.init_app(app)
    assert auth.register("mum@example.com").status_code == 202
    assert smtp.wait("Welcome").recipients == ["mum@example.com"]
    assert client.post("/api/auth/password/forgot", json={"email": "mum@example.com"}).status_code == 202
    got = smtp.wait("password")
    assert got.recipients == ["mum@example.com"] and got.tls
    assert re.search(r"https://app\.storyverse\.example/reset-password\?token=\S+", got.message.get_payload())


def test_production_accepts_a_fit_configuration():
    assert production_problems(FIT) == []


@pytest.mark.parametrize(
    "name, value",
    [
        ("KEY_ENCRYPTION_KEY", DEV_KEY_ENCRYPTION_KEY),
        ("MAIL_BACKEND", "outbox"),
        ("SMTP_SECURITY", "none"),
        ("RESET_URL", "http://localhost:3000/reset-password?token={token}"),
        ("RESET_URL", "http://app.storyverse.example/reset-password?token={token}"),
        ("FAMILY_INVITE_URL", "https://127.0.0.1/join-family?token={token}"),
        ("DEVICE_VERIFICATION_URI", "https://dev.localhost/device"),
        ("DEVICE_VERIFICATION_URI", ""),
    ],
)
def test_production_refuses_an_unfit_setting_by_name(name, value):
    [problem] = production_problems(FIT | {name: value})
    assert problem.startswith(name)


def test_create_app_refuses_outbox_in_production(monkeypatch):
    monkeypatch.setenv("AUTH_ENV", "production")
    with pytest.raises(ConfigError, match="MAIL_BACKEND=outbox"):
        create_app({k: v for k, v in FIT.items() if k != "MAIL_BACKEND"} | {"MAIL_BACKEND": "outbox"})


def _production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(FIT))}
    return env | {"AUTH_ENV": "production", "KEY_ENCRYPTION_KEY": PROD_KEY} | overrides


def test_wsgi_prints_one_line_and_exits_non_zero():
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=AUTH_DIR, env=_production_env(), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4
    [line] = proc.stderr.splitlines()
    assert line.startswith("storyverse-auth: refusing to start (AUTH_ENV=production): MAIL_BACKEND=outbox")
    assert "RESET_URL" in line and "FAMILY_INVITE_URL" in line and "DEVICE_VERIFICATION_URI" in line


def test_gunicorn_stops_instead_of_respawning_workers():
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.run(
        [str(gunicorn), "--bind", "127.0.0.1:0", "--workers", "1", "wsgi:app"], cwd=AUTH_DIR,
        env=_production_env(**{k: v for k, v in FIT.items() if k != "RESET_URL"}), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("storyverse-auth:")]
    assert ours == [
        "storyverse-auth: refusing to start (AUTH_ENV=production): RESET_URL must be a public https URL, "
        "not 'http://localhost:3000/reset-password?token={token}'"
    ]
