"""Statements run through their plans (chalicelib.db.prepared) answer exactly what SQLAlchemy
answers for them: the same rows and types, the columns' defaults and update stamps filled
in, the same row counts and errors; on SQLite, where plans are used, and on MySQL alike."""
from __future__ import annotations

import gc
from datetime import datetime

import pytest
from sqlalchemy import bindparam, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from chalicelib.db import prepared
from chalicelib.db.models import Account, Zone

ZONES = Zone.__table__
_BY_NAME = select(ZONES.c.uuid, ZONES.c.name, ZONES.c.state, ZONES.c.create_date,
                  ZONES.c.last_op_date).where(ZONES.c.name == bindparam("name"))
_AMONG = select(ZONES.c.name).where(ZONES.c.name.in_(bindparam("names", expanding=True))
                                    ).order_by(ZONES.c.name)
_ADD = insert(ZONES)
_DESCRIBE = update(ZONES).where(ZONES.c.name == bindparam("match")).values(
    description=bindparam("text"))
_DROP = delete(ZONES).where(ZONES.c.name == bindparam("name"))


def _planned(db, statement) -> bool:
    return any(plan is not None for plan in prepared._plans.get(statement, {}).values())


def _add(db, *names: str) -> int:
    with db.session() as session:
        account = session.scalar(select(Account.uuid).where(Account.name == "admin"))
        return session.execute(_ADD, [{"name": name, "account_uuid": account}
                                      for name in names]).rowcount


def test_rows_types_and_defaults_match_sqlalchemy(db):
    assert _add(db, "z-a") == 1
    assert _add(db, "z-b", "z-c") == 2  # many rows at once
    assert _add(db, "z-d") == 1  # the insert's second run: planned
    rows = []
    for _ in range(3):  # the first run is SQLAlchemy's own, later ones the plan's
        with db.session() as session:
            rows.append(session.execute(_BY_NAME, {"name": "z-d"}).one())
    assert rows[0] == rows[1] == rows[2]
    row = rows[2]
    assert row.name == "z-d" and row.state == "Enabled" and len(row.uuid) == 32
    assert isinstance(row.create_date, datetime) and isinstance(row.last_op_date, datetime)
    assert row._mapping["name"] == "z-d"
    with db.session() as session:
        zone = session.get(Zone, row.uuid)
        assert (zone.type, zone.create_date) == ("zstack", row.create_date)
    assert _planned(db, _BY_NAME) and _planned(db, _ADD)


def test_in_lists_scalars_and_row_counts(db):
    _add(db, "z-1", "z-2", "z-3")
    with db.session() as session:
        # Lists of one length share one expansion of the SQL; each keeps its own values.
        for names in (["z-1"], ["z-3", "z-1"], ["z-1", "z-2", "z-3", "none"], ["z-2"],
                      ["z-3", "z-2"], [], ["none"], []):
            assert session.scalars(_AMONG, {"names": names}).all() == sorted(
                n for n in names if n != "none")
        assert session.scalar(_AMONG, {"names": ["z-2", "z-3"]}) == "z-2"
    for _ in range(2):
        with db.session() as session:
            assert session.execute(_DESCRIBE, {"match": "z-1", "text": "one"}).rowcount == 1
            assert session.execute(_DESCRIBE, {"match": "nope", "text": "x"}).rowcount == 0
    with db.session() as session:
        before = session.execute(_BY_NAME, {"name": "z-2"}).one()
        session.execute(_DESCRIBE, {"match": "z-2", "text": "two"})
        after = session.execute(_BY_NAME, {"name": "z-2"}).one()
        assert after.last_op_date > before.last_op_date  # the column's onupdate stamp
        assert after.create_date == before.create_date
    for name in ("z-1", "z-2"):
        with db.session() as session:
            assert session.execute(_DROP, {"name": name}).rowcount == 1
    with db.session() as session:
        assert session.scalars(_AMONG, {"names": ["z-1", "z-2", "z-3"]}).all() == ["z-3"]
    assert _planned(db, _AMONG) and _planned(db, _DROP)


def test_a_broken_constraint_is_sqlalchemys_integrity_error(db):
    _add(db, "twice")
    for _ in range(2):  # SQLAlchemy's run, then the plan's
        with pytest.raises(IntegrityError), db.session() as session:
            account = session.scalar(select(Account.uuid).where(Account.name == "admin"))
            session.execute(_ADD, {"name": "twice", "account_uuid": account})


def test_statements_built_on_each_call_are_not_kept(db):
    gc.collect()
    kept = len(prepared._plans)
    for n in range(200):
        with db.session() as session:
            session.execute(select(ZONES.c.uuid).where(ZONES.c.name == f"zone-{n}")).all()
    gc.collect()
    assert len(prepared._plans) <= kept + 1


def test_a_listener_on_the_engine_sees_every_statement(db):
    with db.session() as session:
        session.execute(_AMONG, {"names": ["x"]}).all()  # planned from now on
    seen = []

    def listen(_connection, _cursor, statement, *_args) -> None:
        seen.append(statement)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        with db.session() as session:
            session.execute(_AMONG, {"names": ["x", "y"]}).all()
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert any("FROM zones" in statement for statement in seen)


def test_one_session_across_commits_rollbacks_and_savepoints(db):
    """A plan runs on the connection of the session's transaction as it is now."""
    _add(db, "kept", "kept-too")
    session = db._sessions()
    try:
        for _ in range(2):  # planned from the second run on
            assert session.execute(_DESCRIBE, {"match": "kept", "text": "one"}).rowcount == 1
            session.commit()
        session.execute(_DESCRIBE, {"match": "kept", "text": "rolled back"})
        session.rollback()
        assert session.execute(_BY_NAME, {"name": "kept"}).one().name == "kept"
        savepoint = session.begin_nested()
        session.execute(_DROP, {"name": "kept-too"})
        savepoint.rollback()
        assert session.scalars(_AMONG, {"names": ["kept", "kept-too"]}).all() == \
            ["kept", "kept-too"]
        session.commit()
    finally:
        session.close()
    with db.session() as other:
        assert other.scalar(select(ZONES.c.description).where(ZONES.c.name == "kept")) == "one"
