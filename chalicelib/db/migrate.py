"""Schema migrations with Alembic, driven from code (no alembic.ini to keep in step).

    python -m chalicelib.db.migrate upgrade              # bring the database to head
    python -m chalicelib.db.migrate revision "message"   # autogenerate a new revision
"""
from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Column, Engine, Index

MIGRATIONS = Path(__file__).with_name("migrations")


def comparable(obj, _name, type_: str, reflected: bool, compare_to) -> bool:
    """Alembic's ``include_object``: it compares indexes on columns only, so an index on an
    expression (``... DESC``) is written by hand in its migration and left out of the
    comparison both ways (autogenerate would drop it, the schema test call it extra)."""
    index = compare_to if reflected else obj
    return type_ != "index" or not isinstance(index, Index) or all(
        isinstance(expression, Column) for expression in index.expressions)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def revision(engine: Engine, message: str) -> None:
    command.revision(alembic_config(engine), message=message, autogenerate=True)


def main(argv: list[str]) -> int:
    from chalicelib.db.database import make_engine
    from chalicelib.settings import Settings

    settings = Settings.from_env()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if argv[:1] == ["upgrade"]:
        upgrade(engine)
    elif argv[:1] == ["revision"] and len(argv) == 2:
        revision(engine, argv[1])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
