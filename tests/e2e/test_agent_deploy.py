"""The agent playbook, through ``deploy_agent``, against a "KVM host" that is a network
namespace with its own sshd (tests/support/netns_hosts.py): the agent ends up installed and
running in the namespace and calls the control plane with its host uuid and token; a second
run changes nothing; an unreachable host, a wrong password and a failing task each fail the
way AddKvmHost reports them.

The host shares this machine's filesystem, so the agent's home is put under the host's own
directory (through the operator's extra-vars hook, with Jinja) and libvirt runs embedded in
the agent (``qemu:///embed``): no daemon of the machine is touched.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chalicelib.agents.deploy import AgentSettings, DeployFailed, SshTarget, deploy_agent
from chalicelib.agents.deploy.playbook import EXTRA_VARS_ENV, TASKS_DIR_ENV
from tests.support.netns_hosts import NetnsHosts, NetnsUnavailable, unavailable_reason

pytestmark = pytest.mark.slow
IN_CI = os.environ.get("CI", "").lower() == "true"
AGENT_CALL_TIMEOUT = 60  # the agent's first call follows libvirt's qemu probe (~8 s here)
UNREACHABLE_WITHIN = 15

EXTRA_VARS = """\
aerie_agent_home: "{scratch}/{{{{ aerie_host_uuid[:8] }}}}"
aerie_libvirt_uri: "qemu:///embed?root={{{{ aerie_agent_home }}}}/libvirt"
"""
HOOK_MARKS_THE_HOST = """\
- name: Mark the host as seen by the operator's hook
  ansible.builtin.copy:
    content: "{{ aerie_host_uuid }}"
    dest: "{{ aerie_agent_home }}/hook-ran"
    mode: "0644"
"""
HOOK_REFUSES_THE_HOST = """\
- name: Refuse this host on purpose
  ansible.builtin.fail:
    msg: this host is not welcome here
"""


@dataclass(frozen=True)
class Host:
    """One namespace host and the settings it is deployed with."""

    hosts: NetnsHosts
    settings: AgentSettings
    extra_vars: Path

    @property
    def address(self) -> str:
        return self.hosts.hosts[0].address

    @property
    def home(self) -> Path:
        return self.hosts.hosts[0].scratch / self.settings.host_uuid[:8]

    def target(self, password: str | None = None) -> SshTarget:
        return SshTarget(self.address, 22, self.hosts.username,
                         password=password or self.hosts.password)


class ControlPlaneStub:
    """Answers the agent's calls on the subnet's gateway, as a control plane would, and
    remembers who called."""

    def __init__(self, address: str) -> None:
        self.calls: list[tuple[str, str | None]] = []  # (path, Authorization)
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                calls.append((self.path, self.headers.get("Authorization")))
                time.sleep(1)  # a short long poll
                self._answer({"commands": []})

            def do_POST(self) -> None:  # noqa: N802
                calls.append((self.path, self.headers.get("Authorization")))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer({"pingInterval": 60})

            def _answer(self, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_call(self, host_uuid: str, token: str, within: float) -> float:
        started = time.monotonic()
        while not any(host_uuid in path and auth == f"Agent {token}"
                      for path, auth in list(self.calls)):
            assert time.monotonic() - started < within, \
                f"no call from the agent within {within} s; calls: {self.calls}"
            time.sleep(0.2)
        return time.monotonic() - started

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def namespace_hosts() -> Iterator[NetnsHosts]:
    reason = unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true must run the agent deploy test: {reason}")
        pytest.skip(f"namespace hosts cannot run here: {reason}")
    hosts = NetnsHosts(1)
    try:
        hosts.start()
    except (NetnsUnavailable, subprocess.CalledProcessError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true must run the agent deploy test: {exc}")
        pytest.skip(f"namespace hosts cannot run here: {exc}")
    namespace, user = hosts.hosts[0].namespace, hosts.username
    yield hosts
    hosts.close()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert namespace not in namespaces, "the host's namespace outlived the test"
    assert subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0


@pytest.fixture(scope="module")
def control_plane(namespace_hosts: NetnsHosts) -> Iterator[ControlPlaneStub]:
    stub = ControlPlaneStub(namespace_hosts.gateway)
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def host(namespace_hosts: NetnsHosts, control_plane: ControlPlaneStub) -> Host:
    scratch = namespace_hosts.hosts[0].scratch
    extra_vars = scratch / "extra-vars.yml"
    extra_vars.write_text(EXTRA_VARS.format(scratch=scratch))
    settings = AgentSettings(control_plane.url, str(uuid.uuid4()), uuid.uuid4().hex)
    return Host(namespace_hosts, settings, extra_vars)


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("control-plane-var")


def hook_dir(tmp_path: Path, *files: tuple[str, str]) -> Path:
    directory = tmp_path / "site.d"
    directory.mkdir()
    for name, text in files:
        (directory / name).write_text(text)
    return directory


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[agent deploy] {text}")


def test_deploy_starts_the_agent_in_the_host_and_a_second_run_changes_nothing(
        host, control_plane, var_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EXTRA_VARS_ENV, str(host.extra_vars))
    monkeypatch.setenv(TASKS_DIR_ENV, str(hook_dir(tmp_path, ("10-mark.yml",
                                                              HOOK_MARKS_THE_HOST))))
    progress = []

    first = deploy_agent(host.target(), host.settings, var_dir=var_dir,
                         on_progress=progress.append)

    total = progress[0].task_total
    assert [p.task_number for p in progress] == list(range(1, total + 1))
    assert {p.task_total for p in progress} == {total}
    names = [p.task_name for p in progress]
    assert "Install the agent from the wheels" in names
    assert "Mark the host as seen by the operator's hook" in names
    assert first.changed > 0
    assert (host.home / "venv" / "bin" / "aerie-agent").is_file()
    assert (host.home / "venv" / "pyvenv.cfg").read_text().count(
        "include-system-site-packages = true") == 1
    assert (host.home / "agent.env").stat().st_mode & 0o777 == 0o600
    assert (host.home / "hook-ran").read_text() == host.settings.host_uuid
    agent_pid = int((host.home / "run" / "aerie-agent.pid").read_text())
    assert agent_pid in host.hosts.hosts[0].pids(), "the agent does not run in the namespace"
    assert "aerie-agent" in Path(f"/proc/{agent_pid}/cmdline").read_text()
    assert not any((var_dir / "agent-deploy" / "runs").iterdir()), "a private data dir is left"
    called_after = control_plane.wait_for_call(host.settings.host_uuid, host.settings.token,
                                               AGENT_CALL_TIMEOUT)

    second = deploy_agent(host.target(), host.settings, var_dir=var_dir)

    assert second.changed == 0
    assert second.playbook_digest == first.playbook_digest
    assert int((host.home / "run" / "aerie-agent.pid").read_text()) == agent_pid
    report(capsys, f"first deploy {first.seconds:.1f} s ({first.changed} changed, "
                   f"{total} tasks), agent's first call {called_after:.1f} s later, "
                   f"re-run {second.seconds:.1f} s ({second.changed} changed)")


def _running(pid: int) -> bool:
    """Alive and not a zombie: an exited agent nobody reaped (PID 1 here does not reap
    orphans) still has its /proc entry."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_new_token_restarts_the_agent_with_it(host, control_plane, var_dir, monkeypatch):
    monkeypatch.setenv(EXTRA_VARS_ENV, str(host.extra_vars))
    deploy_agent(host.target(), host.settings, var_dir=var_dir)
    pid_file = host.home / "run" / "aerie-agent.pid"
    old_pid = int(pid_file.read_text())
    renewed = replace(host.settings, token=uuid.uuid4().hex)

    result = deploy_agent(host.target(), renewed, var_dir=var_dir)

    assert result.changed > 0
    new_pid = int(pid_file.read_text())
    assert new_pid != old_pid and new_pid in host.hosts.hosts[0].pids()
    assert not _running(old_pid), "the old agent still runs"
    control_plane.wait_for_call(renewed.host_uuid, renewed.token, AGENT_CALL_TIMEOUT)


def test_a_failing_task_fails_the_deploy_with_its_name(host, var_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(EXTRA_VARS_ENV, str(host.extra_vars))
    monkeypatch.setenv(TASKS_DIR_ENV, str(hook_dir(tmp_path, ("90-refuse.yml",
                                                              HOOK_REFUSES_THE_HOST))))

    with pytest.raises(DeployFailed) as failed:
        deploy_agent(host.target(), host.settings, var_dir=var_dir)

    assert failed.value.reason == "task-failed"
    assert failed.value.task == "Refuse this host on purpose"
    assert "this host is not welcome here" in failed.value.message
    assert failed.value.address == host.address


def test_a_wrong_password_fails_as_authentication(host, var_dir, capsys):
    started = time.monotonic()

    with pytest.raises(DeployFailed) as failed:
        deploy_agent(host.target(password="not-the-password"), host.settings, var_dir=var_dir)

    assert failed.value.reason == "authentication"
    assert "not-the-password" not in str(failed.value)
    report(capsys, f"wrong password fails in {time.monotonic() - started:.1f} s")


def test_an_unreachable_host_fails_within_seconds(host, var_dir, capsys):
    nobody = SshTarget(host.hosts.unused_address(), 22, host.hosts.username, password="x")
    started = time.monotonic()

    with pytest.raises(DeployFailed) as failed:
        deploy_agent(nobody, host.settings, var_dir=var_dir)

    elapsed = time.monotonic() - started
    assert failed.value.reason == "unreachable"
    assert failed.value.address == nobody.address
    assert elapsed < UNREACHABLE_WITHIN
    report(capsys, f"unreachable host fails in {elapsed:.1f} s")
