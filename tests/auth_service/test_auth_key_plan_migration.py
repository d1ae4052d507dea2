"""Migration 0009: API keys a parent gave itself on `partner-basic` become `family` keys (metered by the family's own
plan); admin-owned keys and admin-assigned `partner-premium` keys keep their plan."""

import uuid

from auth_support import ensure_database
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from storyverse_auth import create_app
from storyverse_auth.apikeys.models import ApiKey
from storyverse_auth.clock import now
from storyverse_auth.config import TestConfig
from storyverse_auth.extensions import db
from storyverse_auth.models import Account

EMPTY_URL = make_url(TestConfig.SQLALCHEMY_DATABASE_URI).set(database="storyverse_auth_key_plan_migration_test")
PASSWORD = "a long and quiet bedtime password"


def _account(client, email: str, role: str) -> Account:
    body = {"email": email, "password": PASSWORD, "display_name": "Pat", "time_zone": "Europe/Paris"}
    assert client.post("/api/auth/register", json=body).status_code == 202
    account = db.session.scalar(select(Account).where(Account.email == email))
    account.role = role
    return account


def _key(owner: Account, plan: str) -> uuid.UUID:
    key = ApiKey(id=uuid.uuid4(), owner_id=owner.id, name="k", secret_hash="0" * 64, scopes=[], plan=plan,
                 created_at=now())  # fmt: skip
    db.session.add(key)
    return key.id


def test_0009_moves_self_assigned_partner_basic_keys_to_family():
    url = EMPTY_URL.render_as_string(hide_password=False)
    ensure_database(url, drop=True)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        directory = app.config["MIGRATIONS_DIR"]
        upgrade(directory=directory, revision="0008_privacy")
        client = app.test_client()
        parent, admin = _account(client, "p@example.com", "parent"), _account(client, "a@example.com", "admin")
        ids = {
            "parent-basic": _key(parent, "partner-basic"),
            "parent-premium": _key(parent, "partner-premium"),
            "admin-basic": _key(admin, "partner-basic"),
        }
        db.session.commit()
        db.session.remove()
        upgrade(directory=directory, revision="0009_family_key_plan")
        plans = dict(db.session.execute(text("SELECT id, plan FROM api_keys")).all())
        assert {name: plans[key_id] for name, key_id in ids.items()} == {
            "parent-basic": "family",
            "parent-premium": "partner-premium",
            "admin-basic": "partner-basic",
        }
        db.session.remove()
        downgrade(directory=directory, revision="0008_privacy")  # a data-only step: nothing to undo
        upgrade(directory=directory)
        db.session.remove()
        db.engine.dispose()
