"""Factory, configuration, the problem+json error shape, operations endpoints and the served OpenAPI document."""

import logging
from io import StringIO

import pytest
from argon2 import extract_parameters
from auth_support import assert_problem
from storyverse_auth import create_app
from storyverse_auth.config import DEV_KEY_ENCRYPTION_KEY, Config, ProdConfig
from storyverse_auth.logs import JSONFormatter
from storyverse_auth.password.hashing import Passwords


def test_config_defaults_come_from_the_environment():
    assert Config.ISSUER == "http://localhost:8000"
    assert Config.AUDIENCE == "storyverse-api"
    assert Config.JWT_ALGORITHM == "ES256"
    assert Config.ACCESS_TOKEN_TTL == 600
    assert Config.REFRESH_GRACE_SECONDS <= 30


def test_testing_config(app):
    assert app.testing
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("/storyverse_auth_test")


def test_production_params_are_owasp_argon2id():
    hasher = Passwords(ProdConfig.ARGON2_TIME_COST, ProdConfig.ARGON2_MEMORY_COST, ProdConfig.ARGON2_PARALLELISM)
    params = extract_parameters(hasher.hash("x" * 20))
    assert (params.type.name, params.memory_cost, params.time_cost, params.parallelism) == ("ID", 19456, 2, 1)
    assert hasher.dummy_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_production_refuses_the_development_key(monkeypatch):
    monkeypatch.setenv("AUTH_ENV", "production")
    with pytest.raises(RuntimeError, match="KEY_ENCRYPTION_KEY"):
        create_app({"KEY_ENCRYPTION_KEY": DEV_KEY_ENCRYPTION_KEY})


def test_404_is_a_problem(client):
    assert_problem(client.get("/no/such/thing"), 404, "not_found")


def test_405_is_a_problem_with_allow(client):
    response = client.get("/api/auth/login")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_413_is_a_problem(client):
    response = client.post("/api/auth/login", data="{" + " " * 70_000 + "}", content_type="application/json")
    assert_problem(response, 413, "payload_too_large")


def test_415_is_a_problem(client):
    response = client.post(
        "/api/auth/login", data="email=a&password=b", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_400_on_malformed_json(client):
    response = client.post("/api/auth/login", data="{not json", content_type="application/json")
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"


def test_422_validation_lists_fields(client):
    body = assert_problem(client.post("/api/auth/login", json={"email": "nope"}), 422, "validation_failed")
    assert "json" in body["errors"]
    assert {"email", "password"} <= set(body["errors"]["json"])


def test_500_is_a_problem_without_internals():
    app = create_app({"TESTING": True})

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["detail"] == "An unexpected error occurred."


def test_request_id_is_propagated_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert generated != "bad id!" and len(generated) == 32


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok"}


def test_readyz_reports_a_dead_dependency(migrated_db):
    app = create_app({"TESTING": True, "REDIS_URL": "redis://127.0.0.1:1/0"})
    body = assert_problem(app.test_client().get("/readyz"), 503, "unavailable")
    assert "redis" in body["detail"]


def test_redis_down_fails_closed_with_503(migrated_db):
    app = create_app({"TESTING": True, "REDIS_URL": "redis://127.0.0.1:1/0"})
    body = {"email": "parent@example.com", "password": "whatever password it is"}
    assert_problem(app.test_client().post("/api/auth/login", json=body), 503, "unavailable")


def test_database_down_is_503():
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://postgres@127.0.0.1:1/nope"})
    body = {"email": "parent@example.com", "password": "whatever password it is"}
    assert_problem(app.test_client().post("/api/auth/login", json=body), 503, "unavailable")


def test_create_db_command(runner):
    assert "storyverse_auth_test exists" in runner.invoke(args=["create-db"]).output


def test_openapi_and_docs_served_without_auth(client):
    spec = client.get("/openapi.json").get_json()
    paths = set(spec["paths"])
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/auth/password/forgot",
        "/api/auth/password/reset",
        "/api/auth/password/change",
        "/api/auth/sessions",
        "/api/auth/sessions/{session_id}",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
    login_401 = spec["paths"]["/api/auth/login"]["post"]["responses"]["401"]
    assert "application/problem+json" in login_401["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"openapi.json" in docs.data


def test_logs_are_json_and_never_carry_secrets(client, auth):
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("storyverse_auth")
    logger.addHandler(handler)
    try:
        tokens = auth.tokens()
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        auth.login(password="wrong password but long enough")
        client.post("/api/auth/password/forgot", json={"email": "parent@example.com"})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert '"request_id"' in text and '"event": "login"' in text
    for secret in ("correct horse battery staple twice", "wrong password", tokens["refresh_token"]):
        assert secret not in text
    assert tokens["access_token"].split(".")[2] not in text
    assert "reset-password?token=" not in text
