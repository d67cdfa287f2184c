"""Runs commands exactly once per id: a redelivered id gets the recorded result back."""
from __future__ import annotations

import logging
import time

from hostagent.arguments import ArgumentError
from hostagent.commands import HANDLERS
from hostagent.drivers.base import Driver, DriverError
from hostagent.journal import CommandJournal
from hostagent.protocol import Command, CommandResult, error_result, ok_result

log = logging.getLogger(__name__)


class CommandExecutor:
    def __init__(self, driver: Driver, journal: CommandJournal | None = None, *,
                 success_log_level: int = logging.INFO) -> None:
        """``success_log_level``: where a command that succeeded is logged (failures are
        warnings wherever they happen)."""
        self.driver = driver
        self.journal = journal if journal is not None else CommandJournal(None)
        self._success_level = success_log_level

    def execute(self, command: Command) -> CommandResult:
        recorded = self.journal.get(command["id"])
        if recorded is not None:
            log.info("command %s %s: already executed, returning the recorded result",
                     command["id"], command["name"])
            return recorded
        started = time.monotonic()
        result = self._run(command)
        self.journal.record(result)
        elapsed_ms = (time.monotonic() - started) * 1000
        if result["ok"]:
            log.log(self._success_level, "command %s %s: ok in %.0f ms", command["id"],
                    command["name"], elapsed_ms)
        else:
            log.warning("command %s %s: failed in %.0f ms: %s", command["id"], command["name"],
                        elapsed_ms, result["error"])
        return result

    def _run(self, command: Command) -> CommandResult:
        command_id, name, args = command["id"], command["name"], command["args"]
        handler = HANDLERS.get(name) if isinstance(name, str) else None
        if handler is None:
            return error_result(command_id, f"unknown command {name!r}; this agent knows "
                                            f"{', '.join(sorted(HANDLERS))}")
        if not isinstance(args, dict):
            return error_result(command_id, f"{name}: args must be a JSON object")
        try:
            self.driver.before_command(name)
            return ok_result(command_id, handler(self.driver, args))
        except ArgumentError as exc:
            return error_result(command_id, f"{name}: {exc}")
        except DriverError as exc:
            return error_result(command_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - a driver bug must not kill the agent
            log.exception("command %s %s raised", command_id, name)
            return error_result(command_id, f"{name}: internal agent error: "
                                            f"{type(exc).__name__}: {exc}")

