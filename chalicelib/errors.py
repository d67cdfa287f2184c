"""Errors the domain raises. They are values: the API layer maps each kind to an HTTP status.

Every error carries a stable machine-readable ``code``, a message a person can act on and
optional ``details`` (the offending field, the conflicting resources, ...).
"""
from __future__ import annotations

from typing import Any


class AerieError(Exception):
    code = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidArgument(AerieError):
    code = "InvalidArgument"


class Unauthenticated(AerieError):
    code = "Unauthenticated"


class PermissionDenied(AerieError):
    code = "PermissionDenied"


class NotFound(AerieError):
    code = "ResourceNotFound"


class Conflict(AerieError):
    code = "Conflict"


class InvalidState(Conflict):
    code = "InvalidState"
