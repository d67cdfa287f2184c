"""Alembic environment: the engine comes from chalicelib.db.migrate, the target from the models."""
from alembic import context

import chalicelib.db.models  # noqa: F401  (registers every table)
from chalicelib.db.base import Base
from chalicelib.db.migrate import comparable

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=comparable,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
