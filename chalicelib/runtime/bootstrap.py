"""Bringing a database to a usable state: schema, global configs, the admin account."""
from __future__ import annotations

import chalicelib.api.registry  # noqa: F401  (imports every module that defines a config)
from chalicelib.db.database import Database
from chalicelib.db.migrate import upgrade
from chalicelib.globalconfig import seed
from chalicelib.identity.accounts import ensure_admin


def prepare_database(db: Database, admin_password: str | None) -> str | None:
    """Migrate, seed configs and make sure admin exists. Returns a generated admin password."""
    upgrade(db.engine)
    with db.session() as session:
        seed(session)
        return ensure_admin(session, admin_password)
