"""Canonical events (``host.status.changed``, ``vm.state.changed`` ...) on an in-process bus.

Subscribers are called after the change is made; one that raises is logged and skipped.
The serverless runtime forwards the same events to EventBridge (a later issue).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Subscriber = Callable[[str, dict[str, Any]], None]

_subscribers: list[Subscriber] = []
_lock = threading.Lock()


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Receive every event; returns a function that unsubscribes."""
    with _lock:
        _subscribers.append(subscriber)
    return lambda: _unsubscribe(subscriber)


def _unsubscribe(subscriber: Subscriber) -> None:
    with _lock:
        if subscriber in _subscribers:
            _subscribers.remove(subscriber)


def publish(name: str, payload: dict[str, Any]) -> None:
    log.info("event %s %s", name, payload)
    for subscriber in list(_subscribers):
        try:
            subscriber(name, payload)
        except Exception:  # a broken subscriber must not break the publisher
            log.exception("event subscriber failed on %s", name)


_AFTER_COMMIT = "aerie.events.after_commit"


def publish_after_commit(session: Session, name: str, payload: dict[str, Any]) -> None:
    """Publish once ``session``'s transaction commits (never, if it rolls back): for
    subscribers that read what the event announces from the database."""
    session.info.setdefault(_AFTER_COMMIT, []).append((name, payload))


@sa_event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    for name, payload in session.info.pop(_AFTER_COMMIT, ()):
        publish(name, payload)


@sa_event.listens_for(Session, "after_rollback")
def _drop_uncommitted(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
