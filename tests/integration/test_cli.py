"""The `aerie` client against a real `aerie up` process: one-shot commands as a user runs them
(separate processes, the session on disk), and one scripted shell session with tab completion."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import threading
import time

import httpx
import pytest
from prompt_toolkit.completion import Completer
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from cli.commands import Cli, Options
from cli.shell import Shell
from tests.integration.test_server import AERIE, Server
from tests.support.api import ADMIN_PASSWORD

pytestmark = pytest.mark.slow

UNKNOWN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):
    where = tmp_path_factory.mktemp("cli-server")
    shutil.copy(sqlite_template, where / "aerie.db")
    running = Server({"AERIE_DB_URL": f"sqlite:///{where / 'aerie.db'}",
                      "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, where)
    yield running
    running.stop()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "aerie-home"


@pytest.fixture
def aerie(server, home):
    def aerie(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "AERIE_HOME": str(home), "AERIE_URL": server.url,
               "COLUMNS": "200"}
        return subprocess.run([AERIE, *args], capture_output=True, text=True, env=env,
                              timeout=60)
    return aerie


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def test_login_create_get_query_errors_and_logout(aerie, home, server):
    assert "logged in to" in _ok(aerie("login", "--account", "admin",
                                       "--password", ADMIN_PASSWORD))
    session = home / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    token = json.loads(session.read_text())["token"]

    job = json.loads(_ok(aerie("CreateZone", "name=z1", "description=first zone", "--json")))
    assert job["state"] == "Succeeded" and job["apiName"] == "CreateZone"
    uuid = job["result"]["uuid"]

    shown = _ok(aerie("GetZone", f"uuid={uuid}"))
    rows = [line.strip().split(None, 1) for line in shown.splitlines() if line.strip()]
    assert ["name", "z1"] in rows and ["uuid", uuid] in rows
    assert ["description", "first zone"] in rows

    listed = json.loads(_ok(aerie("QueryZone", "--json")))["inventories"]
    assert uuid in [zone["uuid"] for zone in listed]
    table = _ok(aerie("QueryZone"))
    assert table.splitlines()[1].split() == ["uuid", "name", "state"]
    assert any(line.split() == [uuid, "z1", "Enabled"] for line in table.splitlines())

    # a table by default, a created resource as key/value
    created = _ok(aerie("CreateZone", "name=z2"))
    assert any(line.split() == ["name", "z2"] for line in created.splitlines())

    missing = aerie("GetZone", f"uuid={UNKNOWN}")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "ResourceNotFound" in missing.stderr and UNKNOWN in missing.stderr

    clash = aerie("CreateZone", "name=z1")
    assert clash.returncode == 1 and "Conflict" in clash.stderr  # a 409 on the call itself

    typo = aerie("CreateZon", "name=z3")
    assert typo.returncode == 2 and "did you mean CreateZone" in typo.stderr
    unknown = aerie("CreateZone", "nme=z3")
    assert unknown.returncode == 2 and "valid parameters" in unknown.stderr
    assert aerie("CreateCluster", "name=c1").returncode == 2

    assert "logged out" in _ok(aerie("logout"))
    assert not session.exists()
    after = httpx.get(f"{server.url}/v1/zones", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401  # ended on the server, not only forgotten here
    anonymous = aerie("QueryZone")
    assert anonymous.returncode == 1 and "Unauthenticated" in anonymous.stderr
    assert "aerie login" in anonymous.stderr


def test_query_conditions_are_sent_as_q(aerie):
    _ok(aerie("login", "--password", ADMIN_PASSWORD))
    for name in ("cond-a", "cond-b", "other-c"):
        _ok(aerie("CreateZone", f"name={name}"))

    def names(*conditions: str) -> list[str]:
        reply = json.loads(_ok(aerie("QueryZone", *conditions, "--json")))
        return sorted(zone["name"] for zone in reply["inventories"])

    assert names("name=cond-a") == ["cond-a"]
    assert names("name~=cond-%") == ["cond-a", "cond-b"]
    assert names("name~=cond-%", "name!=cond-a") == ["cond-b"]
    assert names("name?=cond-a,other-c") == ["cond-a", "other-c"]
    only = json.loads(_ok(aerie("QueryZone", "name=cond-b", "fields=uuid,name", "--json")))
    assert [sorted(zone) for zone in only["inventories"]] == [["name", "uuid"]]


class _Signalling(Completer):
    """The shell's completer, telling the test each time it has answered."""

    def __init__(self, inner: Completer) -> None:
        self.inner, self.answered = inner, threading.Event()

    def get_completions(self, document, complete_event):
        yield from self.inner.get_completions(document, complete_event)
        self.answered.set()


def test_a_shell_session_with_tab_completion(server, home):
    out, err = io.StringIO(), io.StringIO()
    cli = Cli(out=Console(file=out, width=200), err=Console(file=err, width=200), home=home,
              env={"AERIE_URL": server.url})
    assert cli.run(["login", "--password", ADMIN_PASSWORD]) == 0
    assert cli.run(["CreateZone", "name=shell-zone"]) == 0

    class ScriptedShell(Shell):
        """Tells the test when the prompt is up (its completer made) and each Tab answered."""

        completers: list[_Signalling] = []

        def completer(self):
            signalling = _Signalling(super().completer())
            self.completers.append(signalling)
            return signalling

    with create_pipe_input() as keys:
        shell = ScriptedShell(cli, Options(), input=keys, output=DummyOutput())
        result: list[int] = []
        runner = threading.Thread(target=lambda: result.append(shell.run()))
        runner.start()
        deadline = time.monotonic() + 20
        while not shell.completers:
            assert time.monotonic() < deadline, err.getvalue()
            time.sleep(0.02)
        completer = shell.completers[0]

        def type_(text: str, *, tab: bool = False) -> None:
            keys.send_text(text)
            if tab:
                completer.answered.clear()
                keys.send_text("\t")
                assert completer.answered.wait(20)
                time.sleep(0.3)  # the completion is inserted right after the completer ends

        type_("QueryZ", tab=True)          # → QueryZone
        type_(" name~=shell-z")
        type_("%")
        type_(" fiel", tab=True)           # → fields=
        type_("uuid,na", tab=True)         # → fields=uuid,name
        type_(" --json\n")
        type_("exit\n")
        runner.join(30)
    assert result == [0], err.getvalue()
    assert completer.inner.resources, "the shell completes from GET /v1/query-metadata"
    printed = out.getvalue()
    reply = json.loads(printed[printed.index("{"):])
    assert [z["name"] for z in reply["inventories"]] == ["shell-zone"]
    assert sorted(reply["inventories"][0]) == ["name", "uuid"]
    history = (home / "history").read_text()
    assert "+QueryZone name~=shell-z% fields=uuid,name --json" in history
