"""``aerie shell``: the one-shot commands at a prompt, with history (``~/.aerie/history``) and
tab completion (cli/completion.py)."""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from cli.arguments import UsageError
from cli.client import ApiError, Unreachable
from cli.completion import AerieCompleter
from cli.render import Printer
from cli.session import ensure_home

if TYPE_CHECKING:
    from cli.commands import Cli, Options

METADATA_PATH = "/v1/query-metadata"


class Shell:
    def __init__(self, cli: Cli, options: Options, *, input: Input | None = None,
                 output: Output | None = None) -> None:
        self.cli, self.options = cli, options
        self.input, self.output = input, output

    def metadata(self, url: str) -> dict[str, Any] | None:
        """What the query API can name; None when the server has none to offer."""
        client = self.cli.client(url)
        try:
            return client.send("GET", METADATA_PATH).json()
        except (ApiError, Unreachable, ValueError):
            return None
        finally:
            client.close()

    def completer(self) -> AerieCompleter:
        url = self.cli.url(self.options)
        return AerieCompleter(self.cli.spec(url), self.metadata(url))

    def run(self) -> int:
        from cli.commands import parse_options

        home = ensure_home(self.cli.home)
        prompt: PromptSession[str] = PromptSession(
            history=FileHistory(str(home / "history")), completer=self.completer(),
            input=self.input, output=self.output, complete_while_typing=False)
        url = self.cli.url(self.options)
        self.cli.out.print(f"aerie shell on {url}: tab completes, help lists operations, "
                           "exit or Ctrl-D leaves", highlight=False)
        while True:
            try:
                line = prompt.prompt("aerie> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            try:
                words = shlex.split(line)
            except ValueError as exc:
                Printer(self.cli.out, self.cli.err).problem(str(exc))
                continue
            if not words:
                continue
            if words[0] in ("exit", "quit"):
                break
            if words[0] == "shell":
                continue
            try:
                options = parse_options(words)
                options.url = options.url or self.options.url
                options.json = options.json or self.options.json
                command, *rest = options.words or [""]
                if not command:
                    continue
                self.cli.dispatch(command, rest, options)
            except UsageError as exc:
                Printer(self.cli.out, self.cli.err).problem(str(exc))
            except KeyboardInterrupt:
                continue
            if words[0] in ("login", "logout", "LogInByAccount", "LogInByUser"):
                prompt.completer = self.completer()  # what a session may query changed
        return 0
