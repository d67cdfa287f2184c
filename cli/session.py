"""Where the CLI keeps its state: ``~/.aerie/`` (``AERIE_HOME`` overrides it).

- ``session.json`` (mode 0600): the server's URL, the bearer token and the session's uuid;
- ``openapi/<hash of the URL>.json``: each server's OpenAPI document;
- ``history``: the shell's history.
The directory is made with mode 0700."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


def aerie_home() -> Path:
    configured = os.environ.get("AERIE_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".aerie"


def ensure_home(home: Path | None = None) -> Path:
    home = home or aerie_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    return home


@dataclass
class Session:
    url: str
    token: str
    uuid: str | None = None
    account: str | None = None
    user: str | None = None


class SessionStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or aerie_home()

    @property
    def path(self) -> Path:
        return self.home / "session.json"

    def load(self) -> Session | None:
        try:
            data = json.loads(self.path.read_text())
            return Session(**{k: data.get(k) for k in Session.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None

    def save(self, session: Session) -> None:
        ensure_home(self.home)
        partial = self.path.with_suffix(".tmp")
        # Created 0600 from the first byte: the token is never readable by others.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(session), out)
        os.chmod(partial, 0o600)
        os.replace(partial, self.path)

    def delete(self) -> bool:
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


class DocumentCache:
    """Each server's OpenAPI document, keyed by its URL."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or aerie_home()

    def path(self, url: str) -> Path:
        key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:24]
        return self.home / "openapi" / f"{key}.json"

    def load(self, url: str, max_age: float | None = None) -> dict[str, Any] | None:
        path = self.path(url)
        try:
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def save(self, url: str, document: dict[str, Any]) -> None:
        path = self.path(url)
        ensure_home(self.home)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(document))
        os.replace(partial, path)
