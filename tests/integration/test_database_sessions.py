"""SQLite's writer turn: writers take turns on an in-process lock; a block that only reads
neither waits for it nor holds it up."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from chalicelib.db.database import Database


def test_a_read_does_not_wait_for_a_writer_that_holds_the_turn(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'turns.db'}")
    try:
        with database.session() as db:
            db.execute(text("CREATE TABLE notes (body TEXT)"))
            db.execute(text("INSERT INTO notes VALUES ('committed')"))
        writing, done = threading.Event(), threading.Event()

        def writer() -> None:
            with database.session() as db:
                db.execute(text("INSERT INTO notes VALUES ('uncommitted')"))
                writing.set()
                done.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            assert writing.wait(10)
            started = time.monotonic()
            with database.session(reads_only=True) as db:
                seen = list(db.scalars(text("SELECT body FROM notes")))
            assert time.monotonic() - started < 1  # not blocked until the writer ends
            assert seen == ["committed"]

            waited = threading.Event()

            def second_writer() -> None:
                with database.session() as db:
                    db.execute(text("SELECT 1"))
                waited.set()

            other = threading.Thread(target=second_writer)
            other.start()
            assert not waited.wait(0.3)  # a writer waits for its turn
        finally:
            done.set()
            thread.join(10)
        other.join(10)
        assert waited.is_set()
    finally:
        database.dispose()
