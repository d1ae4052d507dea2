"""Migrations upgrade and downgrade cleanly on an empty database."""

from auth_support import ensure_database
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from storyverse_auth import create_app
from storyverse_auth.config import TestConfig

EMPTY_URL = make_url(TestConfig.SQLALCHEMY_DATABASE_URI).set(database="storyverse_auth_migrations_test")
TABLES = {"families", "accounts", "signing_keys", "sessions", "password_reset_tokens"}


def _tables(url) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database():
    url = EMPTY_URL.render_as_string(hide_password=False)
    ensure_database(url, drop=True)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        directory = app.config["MIGRATIONS_DIR"]
        upgrade(directory=directory)
        assert TABLES <= _tables(url)
        downgrade(directory=directory, revision="base")
        assert _tables(url) == {"auth_alembic_version"}
        upgrade(directory=directory)
        assert TABLES <= _tables(url)
        from storyverse_auth.extensions import db

        db.engine.dispose()
