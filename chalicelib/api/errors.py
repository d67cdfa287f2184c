"""Errors as HTTP: each kind of domain error has its status; anything else is a 500 (a bug)."""
from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from chalicelib import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidArgument: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
}


def as_aerie_error(exc: BaseException) -> errors.AerieError:
    """Any exception as the error a client sees; unexpected ones are logged in full."""
    if isinstance(exc, errors.AerieError):
        return exc
    if isinstance(exc, IntegrityError):
        # A uniqueness or reference check lost a race with a concurrent change.
        return errors.Conflict(
            "the change conflicts with a concurrent change to the same resources; retry it",
            code="ConcurrentConflict",
        )
    log.exception("unexpected error", exc_info=exc)
    return errors.AerieError(f"internal error ({type(exc).__name__}); see the server log")


def status_of(error: errors.AerieError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_body(error: errors.AerieError) -> dict:
    return {"error": error.to_dict()}
