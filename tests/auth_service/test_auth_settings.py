"""One typed settings object from the environment (pydantic-settings): every variable documented in one generated
table, read when the app is made (not at import), a bad value stops the service with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from storyverse_auth import create_app
from storyverse_auth.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_generated_from_the_settings():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_auth_settings.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    readme = (REPO / "auth-service" / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"| `{name}` |" in readme


def test_settings_the_issue_named_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FAMILY_INVITE_TTL", "3600")
    monkeypatch.setenv("API_KEY_PLANS", '{"partner-gold": ["admin"]}')
    monkeypatch.setenv("DEVICE_CODE_TTL", "120")
    monkeypatch.setenv("SMTP_SECURITY", "tls")
    monkeypatch.setenv("DB_POOL_PRE_PING", "1")
    app = create_app({"TESTING": True})  # read now, long after the import
    assert app.config["FAMILY_INVITE_TTL"] == 3600
    assert app.config["API_KEY_PLANS"] == {"partner-gold": ("admin",)}
    assert app.config["DEVICE_CODE_TTL"] == 120
    assert app.config["SMTP_SECURITY"] == "tls"
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True, "pool_recycle": 300}


def test_the_test_config_keeps_its_own_stores_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://production-redis:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://prod/db")
    app = create_app({"TESTING": True})
    assert app.config["REDIS_URL"].endswith("/9")
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("/storyverse_auth_test")


def test_an_explicit_mapping_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_TTL", "900")
    assert create_app({"TESTING": True, "ACCESS_TOKEN_TTL": 60}).config["ACCESS_TOKEN_TTL"] == 60
    assert create_app({"TESTING": True}).config["ACCESS_TOKEN_TTL"] == 900


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("ACCESS_TOKEN_TTL", "ten minutes", "ACCESS_TOKEN_TTL='ten minutes': Input should be a valid integer"),
        ("ACCESS_TOKEN_TTL", "0", "ACCESS_TOKEN_TTL='0': Input should be greater than 0"),
        ("SMTP_PORT", "70000", "SMTP_PORT='70000': Input should be less than or equal to 65535"),
        ("MAIL_BACKEND", "sendgrid", "MAIL_BACKEND='sendgrid': Input should be 'outbox' or 'smtp'"),
        ("API_KEY_PLANS", "[1, 2]", "API_KEY_PLANS='[1, 2]': Input should be a valid dictionary"),
        ("AUTH_ENV", "prod", "AUTH_ENV='prod': Input should be 'development', 'testing' or 'production'"),
        ("KEY_ENCRYPTION_KEY", "short-secret", "KEY_ENCRYPTION_KEY=<hidden>: String should have at least 43"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    text = str(caught.value)
    assert text.startswith("invalid setting: " + message)
    assert "\n" not in text and "short-secret" not in text


def test_the_service_exits_with_that_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields} | {"THROTTLE_IP_THRESHOLD": "many"}
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=REPO / "auth-service", env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        "storyverse-auth: invalid setting: THROTTLE_IP_THRESHOLD='many': Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
