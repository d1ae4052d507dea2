"""Migration 0003 (usage_daily, api_keys) upgrades and downgrades cleanly on an empty database."""

from auth_support import ensure_database
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from storyverse_auth import create_app
from storyverse_auth.config import TestConfig
from storyverse_auth.extensions import db

EMPTY_URL = make_url(TestConfig.SQLALCHEMY_DATABASE_URI).set(database="storyverse_auth_usage_migrations_test")
NEW_TABLES = {"usage_daily", "api_keys"}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0003_upgrade_downgrade_on_an_empty_database():
    url = EMPTY_URL.render_as_string(hide_password=False)
    ensure_database(url, drop=True)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        directory = app.config["MIGRATIONS_DIR"]
        upgrade(directory=directory, revision="0003_usage_apikeys")
        assert _tables(url) >= NEW_TABLES
        downgrade(directory=directory, revision="0002_families")
        tables = _tables(url)
        assert not tables & NEW_TABLES and "accounts" in tables
        upgrade(directory=directory)  # and on to head (later migrations build on 0003)
        assert _tables(url) >= NEW_TABLES
        db.session.remove()
        db.engine.dispose()
