"""The Alembic migrations create exactly the schema the models describe, on both databases."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from chalicelib.db.base import Base
from chalicelib.db.database import Database
from chalicelib.db.migrate import comparable


def test_migrations_match_the_models(db_url):
    db = Database(db_url)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": comparable})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()


def test_every_resource_has_the_common_fields(db_url):
    db = Database(db_url)
    try:
        tables = inspect(db.engine)
        for model in {m.class_ for m in Base.registry.mappers}:
            if not model.__resource__ or model.__tablename__.endswith("_refs"):
                continue
            columns = {c["name"] for c in tables.get_columns(model.__tablename__)}
            assert "uuid" in columns or model.__resource__ == "GlobalConfig", model
            assert {"create_date", "last_op_date"} <= columns or model.__resource__ in (
                "ApiJob", "Session", "UsedIp", "AgentCommand"), model
    finally:
        db.dispose()
