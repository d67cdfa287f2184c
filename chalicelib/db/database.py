"""The single database seam: an engine and short transactions over it."""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from chalicelib.db.prepared import PlannedSession


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


class WriterTurn:
    """SQLite's one writer at a time, as a turn that writers wait for in line instead of
    SQLite's sleep-and-retry (measured: 4x the job rate with 8 workers): threads take turns
    on a lock, and processes sharing the database file (the API and engine processes of
    ``aerie up``, a benchmark, ``aerie db upgrade``) on an exclusive ``flock`` of a file
    beside it. Re-entrant on one thread. One per database file in a process (see
    :func:`writer_turn`): two of them would hold the same file's lock through two open
    files, and a thread holding one would wait for itself on the other."""

    def __init__(self, lock_path: Path | None) -> None:
        self._threads = threading.RLock()
        self.lock_path = lock_path
        self._fd: int | None = None
        self._depth = 0
        self.users = 0  # the Databases that share it

    def __enter__(self) -> None:
        self._threads.acquire()
        self._depth += 1
        if self._depth == 1 and self.lock_path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._depth -= 1
                self._threads.release()
                raise

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        with self._threads:  # not while a thread holds the file's lock through it
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


_turns: dict[Path, WriterTurn] = {}
_turns_lock = threading.Lock()


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite database; None for another database, or one in memory (which
    no other process sees)."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" \
            or path.startswith("file:"):
        return None
    return path


def writer_turn(url: str) -> AbstractContextManager[None]:
    """The turn writers take on this database: SQLite's (shared with other processes when it
    is a file), or none where the database locks rows itself (MySQL). Call
    :func:`let_go_of` when done with it."""
    if make_url(url).get_backend_name() != "sqlite":
        return nullcontext()
    path = sqlite_file(url)
    if path is None:
        return WriterTurn(None)
    lock_path = Path(f"{path}-turn").resolve()
    with _turns_lock:
        turn = _turns.setdefault(lock_path, WriterTurn(lock_path))
        turn.users += 1
    return turn


def let_go_of(turn: AbstractContextManager[None]) -> None:
    if not isinstance(turn, WriterTurn) or turn.lock_path is None:
        return
    with _turns_lock:
        turn.users -= 1
        if turn.users == 0:
            del _turns[turn.lock_path]
            turn.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, class_=PlannedSession,
                                      expire_on_commit=False)
        self._turn = writer_turn(url)
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
        let_go_of(self._turn)
