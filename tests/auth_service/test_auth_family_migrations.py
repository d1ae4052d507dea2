"""Migration 0002 (families) upgrades and downgrades cleanly on an empty database, and backfills family codes."""

import uuid
from datetime import UTC, datetime

from auth_support import ensure_database
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from storyverse_auth import create_app
from storyverse_auth.config import TestConfig
from storyverse_auth.extensions import db

EMPTY_URL = make_url(TestConfig.SQLALCHEMY_DATABASE_URI).set(database="storyverse_auth_family_migrations_test")
NEW_TABLES = {"consents", "family_invitations", "device_authorizations"}
NEW_ACCOUNT_COLUMNS = {"username", "birth_year", "pin_hash", "max_content_rating", "daily_story_limit"}
NEW_ACCOUNT_COLUMNS |= {"allowed_hours", "features", "consented_at"}


def _schema(url: str) -> tuple[set[str], set[str], set[str]]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        tables = set(found.get_table_names())
        accounts = {c["name"] for c in found.get_columns("accounts")} if "accounts" in tables else set()
        families = {c["name"] for c in found.get_columns("families")} if "families" in tables else set()
        return tables, accounts, families
    finally:
        engine.dispose()


def test_0002_upgrade_downgrade_on_an_empty_database():
    url = EMPTY_URL.render_as_string(hide_password=False)
    ensure_database(url, drop=True)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        directory = app.config["MIGRATIONS_DIR"]
        upgrade(directory=directory, revision="0001_auth_core")
        # A family that existed before 0002 gets a code.
        db.session.execute(
            text(
                "INSERT INTO families (id, name, time_zone, tier, created_at) VALUES (:id, 'Old', 'UTC', 'basic', :ts)"
            ),
            {"id": uuid.uuid4(), "ts": datetime.now(UTC)},
        )
        db.session.commit()
        upgrade(directory=directory, revision="0002_families")
        tables, accounts, families = _schema(url)
        assert tables >= NEW_TABLES and accounts >= NEW_ACCOUNT_COLUMNS and "family_code" in families
        code = db.session.execute(text("SELECT family_code FROM families")).scalar_one()
        assert len(code) == 10
        assert db.session.execute(text("SELECT version_num FROM auth_alembic_version")).scalar_one() == "0002_families"
        db.session.commit()

        downgrade(directory=directory, revision="0001_auth_core")
        tables, accounts, families = _schema(url)
        assert not tables & NEW_TABLES and not accounts & NEW_ACCOUNT_COLUMNS and "family_code" not in families
        downgrade(directory=directory, revision="base")
        assert _schema(url)[0] == {"auth_alembic_version"}
        upgrade(directory=directory)
        assert _schema(url)[0] >= NEW_TABLES
        db.session.remove()
        db.engine.dispose()


def _own_tables(name, type_, parent_names) -> bool:
    return not (type_ == "table" and name == "usage_daily")


def test_models_match_the_migrations(migrated_db):
    """Autogenerate finds nothing to add: models.py and 0001 + 0002 describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(migrated_db)
    try:
        with engine.connect() as conn:
            # usage_daily (0003) belongs to the rate limiting service now: the auth models no longer describe it
            opts = {"version_table": "auth_alembic_version", "include_name": _own_tables}
            context = MigrationContext.configure(conn, opts=opts)
            diff = compare_metadata(context, db.metadata)
    finally:
        engine.dispose()
    assert diff == []
