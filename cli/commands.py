"""The client commands: ``login``, ``logout``, ``shell`` and every API operation by its name
(``aerie CreateZone name=z1``), generated from the server's OpenAPI document."""
from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from cli.arguments import UsageError, build_call
from cli.client import AerieClient, ApiError, Unreachable
from cli.render import Printer
from cli.session import DEFAULT_URL, DocumentCache, Session, SessionStore, aerie_home
from cli.spec import ApiSpec, Operation

USAGE = """aerie up                      start the embedded control plane (see README)
aerie db upgrade              migrate the database named by AERIE_DB_URL to the newest schema
aerie login [--account NAME] [--user NAME] [--password PW] [--url URL]
aerie logout
aerie <Operation> [key=value …] [--json]   e.g. aerie CreateZone name=z1
                                           aerie QueryZone name~=z% cluster.name=c1 limit=5
aerie <Operation> --help      the operation's parameters
aerie help                    every operation
aerie shell                   interactive, with completion
  --url URL (or AERIE_URL)    the server (default: the session's, else http://127.0.0.1:8080)
  --json                      print the raw JSON reply (for an asynchronous call: its job)
  --no-wait                   an asynchronous call: print its job's location, do not wait
"""

PACKAGED_DOCUMENT = Path(__file__).resolve().parents[1] / "openapi.json"
DOCUMENT_MAX_AGE = 3600.0  # seconds a cached document is used without asking the server
VALUE_OPTIONS = ("--url", "--account", "--user", "--password")
FLAG_OPTIONS = ("--json", "--help", "-h", "--no-wait")


@dataclass
class Options:
    url: str | None = None
    account: str | None = None
    user: str | None = None
    password: str | None = None
    json: bool = False
    help: bool = False
    no_wait: bool = False
    words: list[str] = field(default_factory=list)


def parse_options(argv: list[str]) -> Options:
    """Options may come anywhere; everything else is the command and its pairs."""
    options = Options()
    tokens = iter(argv)
    for token in tokens:
        name, equals, inline = token.partition("=")
        if token.startswith("-") and name in VALUE_OPTIONS:
            value = inline if equals else next(tokens, None)
            if value is None:
                raise UsageError(f"{name} needs a value")
            setattr(options, name[2:], value)
        elif token in FLAG_OPTIONS:
            attr = {"-h": "help", "--no-wait": "no_wait"}.get(token, token[2:])
            setattr(options, attr, True)
        elif token.startswith("--"):
            raise UsageError(f"unknown option {token} (options: "
                             f"{', '.join(VALUE_OPTIONS + FLAG_OPTIONS)})")
        else:
            options.words.append(token)
    return options


class Cli:
    """One client: where the server is, the session, the operations, and the printer."""

    def __init__(self, *, out: Console | None = None, err: Console | None = None,
                 home: Path | None = None, env: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.env = os.environ if env is None else env
        self.home = home or aerie_home()
        self.out = out or Console(soft_wrap=True)
        self.err = err or Console(stderr=True, soft_wrap=True)
        self.store = SessionStore(self.home)
        self.cache = DocumentCache(self.home)
        self.transport = transport
        self._specs: dict[str, tuple[ApiSpec, bool]] = {}

    # -- where and who ---------------------------------------------------------------------

    def url(self, options: Options | None = None) -> str:
        session = self.store.load()
        chosen = ((options.url if options else None) or self.env.get("AERIE_URL")
                  or (session.url if session else None) or DEFAULT_URL)
        return chosen.rstrip("/")

    def client(self, url: str) -> AerieClient:
        session = self.store.load()
        token = session.token if session and session.url == url else None
        return AerieClient(url, token, transport=self.transport)

    def spec(self, url: str, *, refresh: bool = False) -> ApiSpec:
        """The server's operations: from the cache while it is fresh, else from the server,
        else (offline) the last cached document or the packaged one."""
        if not refresh and url in self._specs:
            return self._specs[url][0]
        document = None if refresh else self.cache.load(url, DOCUMENT_MAX_AGE)
        fresh = document is None
        if document is None:
            client = self.client(url)
            try:
                document = client.document()
                self.cache.save(url, document)
            except (Unreachable, ApiError, ValueError):
                fresh = False
                document = self.cache.load(url) or json.loads(PACKAGED_DOCUMENT.read_text())
            finally:
                client.close()
        spec = ApiSpec(document)
        self._specs[url] = (spec, fresh)
        return spec

    def operation(self, url: str, name: str) -> Operation:
        spec = self.spec(url)
        if name not in spec.operations and not self._specs[url][1]:
            spec = self.spec(url, refresh=True)  # the server may know it by now
        if name in spec.operations:
            return spec.operations[name]
        near = spec.close_names(name)
        hint = f"; did you mean {', '.join(near)}?" if near else "; `aerie help` lists them"
        raise UsageError(f"unknown operation '{name}'{hint}")

    # -- commands --------------------------------------------------------------------------

    def run(self, argv: list[str]) -> int:
        try:
            options = parse_options(argv)
            if not options.words:
                self.err.print(USAGE, markup=False, highlight=False)
                return 0 if options.help else 2
            command, *rest = options.words
            return self.dispatch(command, rest, options)
        except UsageError as exc:
            Printer(self.out, self.err).problem(str(exc))
            return 2

    def dispatch(self, command: str, rest: list[str], options: Options) -> int:
        printer = Printer(self.out, self.err, options.json)
        if command == "login":
            return self.login(options, printer)
        if command == "logout":
            return self.logout(options, printer)
        if command == "help":
            return self.help(rest, options)
        if command == "shell":
            from cli.shell import Shell

            return Shell(self, options).run()
        return self.call(command, rest, options, printer)

    def call(self, name: str, tokens: list[str], options: Options, printer: Printer) -> int:
        url = self.url(options)
        op = self.operation(url, name)
        if options.help:
            self.describe(op)
            return 0
        try:
            request = build_call(op, tokens)
        except UsageError:
            if self._specs[url][1]:
                raise
            op = self.spec(url, refresh=True).operations.get(name, op)  # a newer server?
            request = build_call(op, tokens)
        client = self.client(url)
        try:
            reply = client.call(request)
            body = reply.json() if reply.content else None
            if reply.status_code == 202 and isinstance(body, dict) and body.get("location"):
                if options.no_wait:
                    printer.reply(body)
                    return 0
                job = self.wait(client, op, body["location"])
                if job is None:
                    return 130
                if job.get("state") == "Failed":
                    printer.job_failed(job)
                    return 1
                printer.job(job)
                return 0
            if op.name in ("LogInByAccount", "LogInByUser"):
                self._remember(url, body, request.body or {})
            fields = [f for p, v in request.params if p == "fields" for f in v.split(",") if f]
            printer.reply(body, fields)
            return 0
        except ApiError as exc:
            printer.api_error(exc)
            if exc.status == 401:
                self.err.print(f"  log in: aerie login --url {url} --account <name>",
                               highlight=False)
            return 1
        except Unreachable as exc:
            printer.problem(str(exc))
            return 1
        finally:
            client.close()

    def wait(self, client: AerieClient, op: Operation, location: str) -> dict[str, Any] | None:
        """Poll the job, with a spinner on a terminal; None when interrupted."""
        last: dict[str, Any] = {}

        def describe(job: dict[str, Any]) -> str:
            return describe_job(op.name, job)

        try:
            if not self.err.is_terminal:
                return client.wait_for_job(location, last.update)
            with self.err.status(f"{op.name}: submitted") as status:
                return client.wait_for_job(
                    location, lambda job: (last.update(job), status.update(describe(job))))
        except KeyboardInterrupt:
            self.err.print(f"still {last.get('state', 'running')}: job {location} "
                           f"(aerie GetApiJob uuid={location.rsplit('/', 1)[-1]})")
            return None

    def login(self, options: Options, printer: Printer) -> int:
        url = self.url(options)
        account = options.account or "admin"
        password = options.password
        if password is None:
            try:
                password = getpass.getpass(f"password for {account}"
                                           f"{'/' + options.user if options.user else ''}: ")
            except (EOFError, KeyboardInterrupt):
                raise UsageError("no password given") from None
        spec = self.spec(url, refresh=True)
        name = "LogInByUser" if options.user else "LogInByAccount"
        op = spec.operations.get(name)
        path = op.path if op else ("/v1/accounts/users/login" if options.user
                                   else "/v1/accounts/login")
        body = {"accountName": account, "password": password}
        if options.user:
            body["userName"] = options.user
        client = AerieClient(url, transport=self.transport)
        try:
            reply = client.send(op.method if op else "PUT", path, body=body).json()
        except ApiError as exc:
            printer.api_error(exc)
            return 1
        except Unreachable as exc:
            printer.problem(str(exc))
            return 1
        finally:
            client.close()
        session = self._remember(url, reply, body)
        if options.json:
            printer.json({"url": url, "session": {k: v for k, v in reply["inventory"].items()
                                                  if k != "token"}})
        else:
            who = account + (f"/{options.user}" if options.user else "")
            expires = reply["inventory"].get("expiredDate")
            self.out.print(f"logged in to {url} as {who}"
                           + (f" (session {session.uuid}, expires {expires})" if expires else ""),
                           highlight=False)
        return 0

    def _remember(self, url: str, reply: Any, body: dict[str, Any]) -> Session:
        inventory = reply.get("inventory", {}) if isinstance(reply, dict) else {}
        session = Session(url=url, token=inventory["token"], uuid=inventory.get("uuid"),
                          account=body.get("accountName"), user=body.get("userName"))
        self.store.save(session)
        return session

    def logout(self, options: Options, printer: Printer) -> int:
        session = self.store.load()
        if session is None:
            self.err.print("not logged in")
            return 0
        url = session.url
        status = 0
        op = self.spec(url).operations.get("LogOut")
        path = (op.path if op else "/v1/accounts/sessions/{sessionUuid}").replace(
            "{sessionUuid}", session.uuid or "")
        client = AerieClient(url, session.token, transport=self.transport)
        try:
            if session.uuid:
                client.send(op.method if op else "DELETE", path)
        except ApiError as exc:
            if exc.status not in (401, 404):  # 401/404: the session had already ended
                printer.api_error(exc)
                status = 1
        except Unreachable as exc:
            printer.problem(f"{exc}; the session may still be valid on the server")
            status = 1
        finally:
            client.close()
        self.store.delete()
        if status == 0:
            self.out.print(f"logged out of {url}", highlight=False)
        return status

    def help(self, rest: list[str], options: Options) -> int:
        url = self.url(options)
        if rest:
            self.describe(self.operation(url, rest[0]))
            return 0
        spec = self.spec(url)
        table = Table(title="operations", title_justify="left", show_edge=False)
        table.add_column("operation", style="bold")
        table.add_column("call")
        table.add_column("summary")
        for name in sorted(spec.operations):
            op = spec.operations[name]
            table.add_row(name, f"{op.method} {op.path}", op.summary)
        self.out.print(table)
        return 0

    def describe(self, op: Operation) -> None:
        self.out.print(f"[bold]{op.name}[/]: {op.method} {op.path}"
                       + (" (asynchronous: a job)" if op.asynchronous else ""), highlight=False)
        if op.summary:
            self.out.print(op.summary, highlight=False)
        table = Table(show_edge=False)
        for column in ("parameter", "in", "type", "required", "description"):
            table.add_column(column)
        for param in op.parameters:
            if op.is_query and param.location == "query":
                continue
            table.add_row(param.name, param.location, _type_name(param.schema),
                          "yes" if param.required else "", param.description)
        if op.is_query:
            for name in op.option_names:
                param = op.parameter(name)
                table.add_row(name, "option", _type_name(param.schema) if param else "", "",
                              param.description if param else "")
            table.add_row("<field><op><value>", "condition", "", "",
                          "e.g. name~=z% cluster.name=c1 (q=…)")
        self.out.print(table)


def _type_name(schema: dict[str, Any]) -> str:
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return "|".join(_type_name(s) for s in options if s.get("type") != "null")
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"{_type_name(schema.get('items', {}))},…"
    return str(schema.get("type", ""))


def describe_job(name: str, job: dict[str, Any]) -> str:
    """A running job in one line: its state, its place in its queue, its flow's step and
    what that step is doing (``AddKvmHost: Running · connect-host: host.deploy-agent (task
    7/23: Install the agent)``)."""
    text = f"{name}: {job.get('state', '…')}"
    if job.get("state") == "Waiting" and job.get("position"):
        text += f" ({job['position']} ahead in {job.get('signature')})"
    progress = job.get("progress")
    if isinstance(progress, dict) and progress.get("currentStep"):
        text += f" · {progress.get('flow')}: {progress['currentStep']}"
        detail = progress.get("detail")
        if isinstance(detail, dict) and detail.get("task"):
            text += f" (task {detail['task']}/{detail.get('tasks', '?')}: " \
                    f"{detail.get('taskName', '')})"
    return text
