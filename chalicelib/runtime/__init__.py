"""The two runtimes and the one the process uses.

``embedded`` runs jobs on in-process workers; ``aws`` hands them to SQS for a Lambda to run.
Everything else (API, domain) reaches the runtime only through ``current()``.
"""
from __future__ import annotations

import threading

from chalicelib.runtime.base import Runtime
from chalicelib.settings import Settings

_lock = threading.Lock()
_current: Runtime | None = None


def build(settings: Settings) -> Runtime:
    if settings.runtime == "aws":
        from chalicelib.runtime.aws import AwsRuntime

        return AwsRuntime(settings)
    if settings.runtime == "embedded":
        from chalicelib.runtime.embedded import EmbeddedRuntime

        return EmbeddedRuntime(settings)
    raise ValueError(f"AERIE_RUNTIME must be embedded or aws, got {settings.runtime!r}")


def current() -> Runtime:
    """The process's runtime, built from the environment on first use (a Lambda cold start)."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build(Settings.from_env())
    return _current


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the process's runtime (``aerie up`` and tests)."""
    global _current
    _current = runtime
