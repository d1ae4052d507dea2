"""Migration 0010: one active and one next signing key per algorithm; keys that were active are marked as having
signed access tokens; the downgrade refuses (changing nothing) while two algorithms have live keys."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from auth_support import ensure_database
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url
from storyverse_auth import create_app
from storyverse_auth.config import TestConfig
from storyverse_auth.extensions import db

EMPTY_URL = make_url(TestConfig.SQLALCHEMY_DATABASE_URI).set(database="storyverse_auth_signing_keys_migration_test")
INSERT = text(
    "INSERT INTO signing_keys (kid, algorithm, state, public_jwk, private_key_encrypted, created_at, activated_at) "
    "VALUES (:kid, :alg, :state, '{}', '\\x00', now(), CASE WHEN :state = 'next' THEN NULL ELSE now() END)"
)


def _insert(kid: str, alg: str, state: str) -> None:
    db.session.execute(INSERT, {"kid": kid, "alg": alg, "state": state})
    db.session.commit()


def _index_columns() -> list[str]:
    return [
        index["column_names"]
        for index in sa.inspect(db.engine).get_indexes("signing_keys")
        if index["name"].startswith("uq_signing_keys")
    ]


def test_0010_allows_a_key_pair_per_algorithm_and_downgrades_only_when_the_data_fits(capfd):
    url = EMPTY_URL.render_as_string(hide_password=False)
    ensure_database(url, drop=True)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        directory = app.config["MIGRATIONS_DIR"]
        upgrade(directory=directory, revision="0009_family_key_plan")
        _insert("es-active", "ES256", "active")
        _insert("es-next", "ES256", "next")
        _insert("es-old", "ES256", "retired")
        with pytest.raises(sa.exc.IntegrityError):  # 0009: one active key in all
            _insert("rs-active", "RS256", "active")
        db.session.rollback()
        upgrade(directory=directory, revision="0010_signing_keys_per_algorithm")
        assert _index_columns() == [["algorithm", "state"]]
        marked = dict(db.session.execute(text("SELECT kid, signed_access_tokens FROM signing_keys")).all())
        assert marked == {"es-active": True, "es-next": False, "es-old": True}
        _insert("rs-active", "RS256", "active")
        _insert("rs-next", "RS256", "next")
        with pytest.raises(sa.exc.IntegrityError):  # still one active key per algorithm
            _insert("rs-active-2", "RS256", "active")
        db.session.rollback()
        db.session.remove()

        with pytest.raises(SystemExit):  # flask_migrate logs the RuntimeError and exits 1
            downgrade(directory=directory, revision="0009_family_key_plan")
        logged = capfd.readouterr().err  # (alembic's logging configuration bypasses caplog)
        assert "cannot downgrade below 0010" in logged and "active: ES256, RS256" in logged
        assert _index_columns() == [["algorithm", "state"]]  # nothing changed
        db.session.remove()

        db.session.execute(text("DELETE FROM signing_keys WHERE algorithm = 'RS256'"))
        db.session.commit()
        db.session.remove()
        downgrade(directory=directory, revision="0009_family_key_plan")
        assert _index_columns() == [["state"]]
        db.session.remove()
        upgrade(directory=directory)
        db.session.remove()
        db.engine.dispose()
