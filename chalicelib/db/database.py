"""The single database seam: an engine and short transactions over it."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; busy_timeout makes writers queue instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=32,
            max_overflow=32,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_size=20, max_overflow=40, pool_pre_ping=True, pool_recycle=3600,
        isolation_level="READ COMMITTED",
    )


_AFTER_RELEASE = "aerie.db.after_release"


def after_release(session: Session, callback: Callable[[], None]) -> None:
    """Call ``callback`` once ``session``'s block has ended and let go of SQLite's writer
    turn (at once for a session no :class:`Database` made): for work that must follow a
    commit but need not hold up the next writer."""
    callbacks = session.info.get(_AFTER_RELEASE)
    if callbacks is None:
        callback()
    else:
        callbacks.append(callback)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time and makes the others sleep and retry; in one process
        # taking turns on a lock is far cheaper (measured: 4x the job rate with 8 workers).
        self._turn = threading.RLock() if url.startswith("sqlite") else nullcontext()
        self._shared = threading.local()

    @contextmanager
    def session(self, *, reads_only: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises. Inside
        :meth:`transaction`, on the same thread, it is that transaction instead.

        ``reads_only``: a block that (almost always) only reads does not wait for SQLite's
        writer turn, nor hold it up; WAL lets it read beside the writer. A write in it
        still works, through SQLite's own lock rather than in turn."""
        shared = getattr(self._shared, "session", None)
        if shared is not None:
            yield shared
            return
        session = self._sessions()
        session.info[_AFTER_RELEASE] = callbacks = []
        try:
            # From the first statement to the end of the transaction.
            with nullcontext() if reads_only else self._turn:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            session.close()
            for callback in callbacks:
                callback()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction that every :meth:`session` opened on this thread inside the block
        joins: what they do commits together when the block ends, or not at all if it
        raises (an exception a joined block raises must reach this block's end)."""
        with self.session() as session:
            self._shared.session = session
            try:
                yield session
            finally:
                self._shared.session = None

    def dispose(self) -> None:
        self.engine.dispose()
