"""One ``aerie up`` per database. A second one would take the first one's running jobs for
interrupted ones, roll them back and fail them while the first still runs them; so each
holds a lock on its database for as long as it runs, and a second one stops before it
touches anything.

SQLite: an exclusive ``flock`` of ``<database file>-instance`` (the file holds the holder's
pid). MySQL: a named lock (``GET_LOCK``) held by a connection of its own. Either is let go
when the process ends, however it ends.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from chalicelib.db.database import sqlite_file

_MYSQL_LOCK_SECONDS = 0  # do not wait: a held lock means another aerie up runs


class AlreadyRunning(RuntimeError):
    """Another ``aerie up`` holds the database."""


class InstanceLock:
    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release

    @classmethod
    def take(cls, db_url: str) -> InstanceLock:
        """The lock on ``db_url``'s database; AlreadyRunning if another process holds it.
        A database only this process can see (SQLite in memory) needs none."""
        path = sqlite_file(db_url)
        if path is not None:
            return cls._take_file(Path(f"{path}-instance").resolve())
        url = make_url(db_url)
        if url.get_backend_name() in ("mysql", "mariadb"):
            return cls._take_named(db_url, url.database or "")
        return cls(lambda: None)  # SQLite in memory, which no other process sees

    @classmethod
    def _take_file(cls, path: Path) -> InstanceLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another aerie up (pid {holder}) is using this database; stop it first, or "
                f"give this one its own AERIE_DB_URL") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(lambda: os.close(fd))  # closing the file lets go of its lock

    @classmethod
    def _take_named(cls, db_url: str, database: str) -> InstanceLock:
        engine = create_engine(db_url, poolclass=NullPool)
        connection = engine.connect()
        # The server drops a connection idle past wait_timeout (8 hours by default), and
        # its locks with it: this one stays idle for as long as aerie up runs.
        connection.execute(text("SET SESSION wait_timeout = 31536000"))
        name = f"aerie-up:{database}"[:64]  # MySQL's limit on a lock's name
        got = connection.scalar(text("SELECT GET_LOCK(:name, :wait)"),
                                {"name": name, "wait": _MYSQL_LOCK_SECONDS})
        connection.commit()  # a named lock outlives transactions; an open one would not
        if got != 1:
            holder = connection.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
            connection.close()
            engine.dispose()
            raise AlreadyRunning(
                f"another aerie up (MySQL connection {holder}) is using database {database}; "
                f"stop it first, or give this one its own AERIE_DB_URL")

        def release() -> None:
            connection.close()  # a closed connection's named locks are let go
            engine.dispose()
        return cls(release)

    def release(self) -> None:
        self._release()
