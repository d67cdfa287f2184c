"""The ids of executed commands with their results, so a redelivered command is answered from
here instead of acting twice. Bounded (oldest forgotten first); persisted as one JSON file."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from hostagent.files import read_json, write_json_atomic
from hostagent.protocol import CommandResult

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000


class CommandJournal:
    def __init__(self, path: Path | None, capacity: int = DEFAULT_CAPACITY) -> None:
        """``path`` None keeps the journal in memory only (it then does not survive a restart)."""
        self.path = path
        self.capacity = capacity
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._results

    def get(self, command_id: str) -> CommandResult | None:
        return self._results.get(command_id)

    def record(self, result: CommandResult) -> None:
        self._results[result["id"]] = result
        self._results.move_to_end(result["id"])
        while len(self._results) > self.capacity:
            self._results.popitem(last=False)
        if self.path is not None:
            write_json_atomic(self.path, {"version": 1, "results": list(self._results.values())})

    def _load(self, path: Path) -> None:
        data = read_json(path)
        if data is None:
            return
        entries = data.get("results") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            log.warning("ignoring command journal %s: unexpected content", path)
            return
        for entry in entries[-self.capacity:]:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                self._results[entry["id"]] = entry  # type: ignore[assignment]
