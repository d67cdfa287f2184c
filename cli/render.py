"""What the CLI prints: tables (rich) for people, the raw JSON with ``--json``."""
from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from cli.client import ApiError

# Columns every listing shows when its rows have them, before what ``fields=`` asked for.
DEFAULT_COLUMNS = ("uuid", "name", "state", "status")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def columns_for(rows: list[dict[str, Any]], fields: list[str] | None = None) -> list[str]:
    present: list[str] = []
    for row in rows:
        present += [k for k in row if k not in present]
    columns = [c for c in DEFAULT_COLUMNS if c in present]
    for name in fields or []:
        if name not in columns:
            columns.append(name)
    if not columns:  # rows of some other shape: show what they have
        columns = present
    return columns


def inventory_table(inventory: dict[str, Any], title: str | None = None) -> Table:
    table = Table(box=box.SIMPLE, show_header=False, title=title, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in inventory.items():
        table.add_row(key, cell(value))
    return table


def inventories_table(rows: list[dict[str, Any]], fields: list[str] | None = None) -> Table:
    columns = columns_for(rows, fields)
    table = Table(box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(column)) for column in columns))
    return table


class Printer:
    def __init__(self, out: Console, err: Console, as_json: bool = False) -> None:
        self.out, self.err, self.as_json = out, err, as_json

    def json(self, body: Any) -> None:
        # Plain print: no markup, no wrapping, what a script can parse.
        self.out.file.write(json.dumps(body, indent=2) + "\n")
        self.out.file.flush()

    def reply(self, body: Any, fields: list[str] | None = None) -> None:
        if self.as_json:
            self.json(body)
            return
        if isinstance(body, dict) and isinstance(body.get("inventories"), list):
            rows = body["inventories"]
            if rows:
                self.out.print(inventories_table(rows, fields))
            total = body.get("total")
            self.out.print(f"{len(rows)} result{'s' if len(rows) != 1 else ''}"
                           + (f" of {total}" if total is not None else ""))
        elif isinstance(body, dict) and isinstance(body.get("inventory"), dict):
            self.out.print(inventory_table(body["inventory"]))
        elif isinstance(body, dict) and body:
            self.out.print(inventory_table(body))
        elif body in ({}, None, ""):
            self.out.print("done")
        else:
            self.out.print(cell(body))

    def job(self, job: dict[str, Any]) -> None:
        if self.as_json:
            self.json(job)
            return
        result = job.get("result")
        if isinstance(result, dict) and result:
            self.out.print(inventory_table(result))
        elif isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
            self.out.print(inventories_table(result))
        else:
            self.out.print(f"{job.get('apiName') or 'job'} {job.get('uuid', '')} succeeded")

    def job_failed(self, job: dict[str, Any]) -> None:
        error = job.get("error") or {}
        self.err.print(f"[bold red]{error.get('code', 'Failed')}[/]: "
                       f"{_escape(error.get('message', 'the job failed'))}")
        progress = error.get("details") if error.get("code") == "FlowFailed" else None
        if not isinstance(progress, dict):
            progress = job.get("progress") if isinstance(job.get("progress"), dict) else None
        if progress and progress.get("failedStep"):
            step_error = progress.get("error") or {}
            cause = (f" ({step_error.get('code')}: {step_error.get('message')})"
                     if step_error else "")
            self.err.print(f"  flow {_escape(str(progress.get('flow')))}: step "
                           f"{_escape(str(progress['failedStep']))} failed{_escape(cause)}")
            for rollback in progress.get("rollbacks") or []:
                if rollback.get("succeeded", True):
                    self.err.print(f"  rolled back {_escape(str(rollback.get('step')))}")
                else:
                    failed = rollback.get("error") or {}
                    self.err.print(f"  [red]rollback of {_escape(str(rollback.get('step')))} "
                                   f"failed[/]: {failed.get('code')}: "
                                   f"{_escape(str(failed.get('message')))}")
        elif error.get("details"):
            self.err.print(f"  details: {_escape(cell(error['details']))}")
        self.err.print(f"  job: {job.get('uuid')}")

    def api_error(self, error: ApiError) -> None:
        self.err.print(f"[bold red]{_escape(error.code)}[/]: {_escape(error.message)}")
        if error.details:
            self.err.print(f"  details: {_escape(cell(error.details))}")

    def problem(self, message: str) -> None:
        self.err.print(f"[bold red]error[/]: {_escape(message)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
