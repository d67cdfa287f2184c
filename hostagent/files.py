"""Small files the agent keeps: written whole, atomically (a crash leaves the old or the new)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it does not exist. A corrupt file is renamed aside (so it
    can be inspected) and treated as absent: the agent must start even then."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        return None
