"""The link between ``aerie up``'s two processes: JSON messages over a connected socket.

A message is ``[kind, body]``, framed by its length. Each side registers a handler per kind;
one reader thread calls them in the order the messages came. Sending only queues the message
for a writer thread (which sends whatever has queued up in one go): a sender never waits for
the other side, even when that side is busy or stopped and the socket's buffer is full.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]
_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 64 * 1024 * 1024


class LinkClosed(ConnectionError):
    """The other process closed its end (it stopped, or died)."""


class Link:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self._name = name
        self._outbox: deque[bytes] = deque()
        self._outbox_filled = threading.Condition()
        self._handlers: dict[str, Handler] = {}
        self._closed = threading.Event()
        self._on_closed: list[Callable[[], None]] | None = []  # None: they were called
        self._on_closed_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, name=f"aerie-link-{name}",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_loop,
                                        name=f"aerie-link-{name}-out", daemon=True)

    def on(self, kind: str, handler: Handler) -> None:
        """Call ``handler(body)`` for every message of ``kind`` (set before :meth:`start`)."""
        self._handlers[kind] = handler

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the other side has gone: on the reader thread, or at once
        (on this thread) if it has gone already."""
        with self._on_closed_lock:
            if self._on_closed is not None:
                self._on_closed.append(callback)
                return
        callback()

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, kind: str, body: Any) -> None:
        """Queue the message; LinkClosed once the other side has gone."""
        if self._closed.is_set():
            raise LinkClosed(f"the {self._name} link is closed")
        data = json.dumps([kind, body], separators=(",", ":")).encode()
        with self._outbox_filled:
            self._outbox.append(_LENGTH.pack(len(data)) + data)
            self._outbox_filled.notify()

    def close(self) -> None:
        """Stop: the other side sees the link close (messages not yet sent are dropped)."""
        self._closed.set()
        with self._outbox_filled:
            self._outbox_filled.notify()
        with contextlib.suppress(OSError):  # already gone
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _write_loop(self) -> None:
        while True:
            with self._outbox_filled:
                while not self._outbox and not self._closed.is_set():
                    self._outbox_filled.wait()
                if self._closed.is_set():
                    return
                frames = b"".join(self._outbox.popleft() for _ in range(len(self._outbox)))
            try:
                self._sock.sendall(frames)
            except OSError as exc:
                if not self._closed.is_set():
                    log.info("the %s link closed: %s", self._name, exc)
                    self._closed.set()
                return

    def _read_exactly(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise LinkClosed(f"the {self._name} link closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read_loop(self) -> None:
        try:
            while True:
                (size,) = _LENGTH.unpack(self._read_exactly(_LENGTH.size))
                if size > MAX_MESSAGE:
                    raise LinkClosed(f"a {size}-byte message on the {self._name} link, over "
                                     f"the {MAX_MESSAGE}-byte limit: closing it")
                kind, body = json.loads(self._read_exactly(size))
                handler = self._handlers.get(kind)
                if handler is None:
                    log.error("no handler for %r messages on the %s link", kind, self._name)
                    continue
                try:
                    handler(body)
                except Exception:  # one bad message must not end the link
                    log.exception("handling a %r message on the %s link failed", kind,
                                  self._name)
        except (LinkClosed, OSError) as exc:
            if not self._closed.is_set():
                log.info("%s", exc)
        except (ValueError, TypeError) as exc:  # not JSON, or not [kind, body]
            log.error("a malformed message on the %s link (%s): closing it", self._name, exc)
        finally:
            self._closed.set()
            with contextlib.suppress(OSError):  # so that the other side learns it too
                self._sock.shutdown(socket.SHUT_RDWR)
            with self._on_closed_lock:
                callbacks, self._on_closed = self._on_closed or [], None
            for callback in callbacks:
                callback()
