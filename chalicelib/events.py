"""Canonical events (``host.status.changed``, ``vm.state.changed`` ...) on an in-process bus.

Subscribers are called after the change is made; one that raises is logged and skipped.
Events published after commit reach subscribers in commit order, once the committing
session let go of the database (SQLite's writer turn), so subscribers never hold it up.
A bridge carries the events published here to another process (``aerie up``'s API and
engine processes), whose subscribers get them through :func:`deliver`. The serverless
runtime forwards the same events to EventBridge (a later issue).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from chalicelib.db.database import after_release

log = logging.getLogger(__name__)

Subscriber = Callable[[str, dict[str, Any]], None]
_PLUMBING = "agent.command."  # events logged at DEBUG only

Names = frozenset[str] | None  # None: every event

_subscribers: list[tuple[Subscriber, Names]] = []
_bridges: list[Subscriber] = []
_watchers: list[Callable[[Names], None]] = []
_lock = threading.RLock()


def subscribe(subscriber: Subscriber, names: Iterable[str] | None = None) -> Callable[[], None]:
    """Receive the events named in ``names`` (every event without); returns a function
    that unsubscribes."""
    entry = (subscriber, None if names is None else frozenset(names))
    with _lock:
        _subscribers.append(entry)
        _tell_watchers()
    return lambda: _remove(_subscribers, entry)


def bridge(send: Subscriber) -> Callable[[], None]:
    """Hand every event published in this process to ``send`` too (to reach another
    process); returns a function that removes the bridge."""
    with _lock:
        _bridges.append(send)
    return lambda: _remove(_bridges, send)


def wanted() -> Names:
    """The events this process's subscribers want: None for every event."""
    with _lock:
        names: set[str] = set()
        for _, wanted_names in _subscribers:
            if wanted_names is None:
                return None
            names |= wanted_names
        return frozenset(names)


def watch_wanted(callback: Callable[[Names], None]) -> Callable[[], None]:
    """Call ``callback(wanted())`` now and whenever subscriptions change (what a bridge
    tells the other process, so that it sends only those)."""
    with _lock:
        _watchers.append(callback)
        callback(wanted())
    return lambda: _remove(_watchers, callback)


def _tell_watchers() -> None:
    if _watchers:
        names = wanted()
        for callback in list(_watchers):
            callback(names)


def _remove(registered: list, item: object) -> None:
    with _lock:
        if item in registered:
            registered.remove(item)
            if registered is _subscribers:
                _tell_watchers()


def publish(name: str, payload: dict[str, Any]) -> None:
    # Events in `aerie up`'s log are what an operator reads first; committed events are
    # published after SQLite's writer turn is released, so logging them costs no turn time.
    # An agent's command is plumbing (two of them per VM created, each queued and
    # finished): at INFO they would be most of the log, and logging costs CPU.
    log.log(logging.DEBUG if name.startswith(_PLUMBING) else logging.INFO,
            "event %s %s", name, payload)
    deliver(name, payload)
    for send in list(_bridges):
        try:
            send(name, payload)
        except Exception:  # the other process is gone: its own shutdown reports it
            log.exception("could not pass event %s to the other process", name)


def deliver(name: str, payload: dict[str, Any]) -> None:
    """Hand an event to this process's subscribers (not to its bridges): an event another
    process published (and logged), or this process's own."""
    for subscriber, names in list(_subscribers):
        if names is not None and name not in names:
            continue
        try:
            subscriber(name, payload)
        except Exception:  # a broken subscriber must not break the publisher
            log.exception("event subscriber failed on %s", name)


_AFTER_COMMIT = "aerie.events.after_commit"
_committed: deque[tuple[str, dict[str, Any]]] = deque()  # in commit order, not yet published
_publishing = threading.RLock()  # a subscriber's own commit may publish on the same thread


def publish_after_commit(session: Session, name: str, payload: dict[str, Any]) -> None:
    """Publish once ``session``'s transaction commits (never, if it rolls back): for
    subscribers that read what the event announces from the database."""
    session.info.setdefault(_AFTER_COMMIT, []).append((name, payload))


@sa_event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    pending = session.info.pop(_AFTER_COMMIT, None)
    if pending:
        _committed.extend(pending)  # still inside the commit: in commit order
        after_release(session, _publish_all_committed)


def _publish_all_committed() -> None:
    """Publish every committed event in order; returns once this thread's are published
    (whichever thread publishes them)."""
    with _publishing:
        while _committed:
            publish(*_committed.popleft())


@sa_event.listens_for(Session, "after_rollback")
def _drop_uncommitted(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
