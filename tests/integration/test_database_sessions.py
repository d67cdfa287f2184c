"""SQLite's writer turn: writers take turns, threads on a lock and processes on a lock file
beside the database; a block that only reads neither waits for it nor holds it up."""
from __future__ import annotations

import subprocess
import sys
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


_OTHER_PROCESS_WRITES = """
import sys, time
from sqlalchemy import text
from chalicelib.db.database import Database
database = Database(sys.argv[1])
with database.session() as db:
    db.execute(text("INSERT INTO notes VALUES ('from the other process')"))
print(time.time())  # when its write went in
"""


def test_a_writer_in_another_process_waits_for_the_turn(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    database = Database(url)
    try:
        with database.session() as db:
            db.execute(text("CREATE TABLE notes (body TEXT)"))
        with database.session() as db:
            # Only a read: SQLite itself would let the other process write meanwhile.
            assert list(db.scalars(text("SELECT body FROM notes"))) == []
            other = subprocess.Popen([sys.executable, "-c", _OTHER_PROCESS_WRITES, url],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            assert other.poll() is None  # waiting for the turn
        released = time.time()
        out, _ = other.communicate(timeout=30)
        assert other.returncode == 0 and float(out) >= released
        with database.session() as db:
            assert list(db.scalars(text("SELECT body FROM notes"))) == ["from the other process"]
    finally:
        database.dispose()
