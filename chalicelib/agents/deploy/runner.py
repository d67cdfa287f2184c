"""``deploy_agent``: one ansible-runner run of the playbook against one host over SSH.

Every run gets a private data directory under the var dir (0700; the inventory with the
password, the key and the variables with the token are 0600 files in it) and removes it
when it ends, whatever the outcome. Nothing secret is logged or passed on a command line.

Host keys are not checked by default: the control plane meets a host for the first time when
it is added, knows no key for it, and trust-on-first-use would accept whichever key answers
(while a reused address, common when hosts are reinstalled, would fail for good). The host's
address is the operator's own management network. An operator who provisions known host
keys sets ``AERIE_ANSIBLE_KNOWN_HOSTS`` to a known_hosts file: every key is then checked
against it and an unknown or changed key fails the run as ``unreachable``.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.agents.deploy.events import PlaybookEvents, shorten
from chalicelib.agents.deploy.model import (
    AgentSettings,
    DeployFailed,
    DeployProgress,
    DeployResult,
    SshTarget,
)
from chalicelib.agents.deploy.playbook import (
    ANSIBLE_BIN,
    ANSIBLE_DIR,
    PLAYBOOK,
    OperatorSettings,
    playbook_digest,
    task_total,
)
from chalicelib.agents.deploy.wheels import agent_wheels

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5  # seconds: an unreachable host fails within a few seconds
# One SSH connection serves every task; it closes soon after the run (and is closed
# explicitly at the end), so no connection outlives the run by more than that.
CONTROL_PERSIST = 30
HOST_PYTHON = "/usr/bin/python3"
FAILED_OUTPUT_CHARS = 600


def _ignore_progress(progress: DeployProgress) -> None:
    pass


def deploy_agent(target: SshTarget, settings: AgentSettings, *, var_dir: Path,
                 on_progress: Callable[[DeployProgress], None] = _ignore_progress,
                 timeout: float = 600) -> DeployResult:
    """Prepare the host and start its agent; raises DeployFailed when it cannot. ``timeout``
    bounds the whole call, the wheel bundle's build and the task count included."""
    import ansible_runner  # heavy, and only the deploying process needs it

    started = time.monotonic()
    operator = OperatorSettings.from_env()
    digest = playbook_digest(operator)
    wheels = agent_wheels(var_dir)
    total = task_total(var_dir, operator, digest)
    runs = var_dir / "agent-deploy" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
    # ssh's control sockets: a short path (a unix socket's is limited to 108 bytes)
    control = Path(tempfile.mkdtemp(prefix="aerie-ssh-"))
    events = PlaybookEvents(target.address, total, on_progress)
    log.info("deploying the agent to %s@%s:%d (%d tasks)", target.username, target.address,
             target.port, total)
    try:
        inventory = write_private_files(private, target, settings, wheels, operator)
        runner = ansible_runner.run(
            private_data_dir=str(private), project_dir=str(ANSIBLE_DIR),
            playbook=str(PLAYBOOK), inventory=str(inventory),
            cmdline=operator_cmdline(operator),
            envvars=ansible_environment(private, control, operator),
            event_handler=events.handle, quiet=True,
            timeout=max(1, round(timeout - (time.monotonic() - started))))
        output = _output_tail(runner)
    finally:
        _close_ssh_connections(control)
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(control, ignore_errors=True)
    seconds = time.monotonic() - started
    if runner.status == "timeout":
        raise DeployFailed(target.address, "timeout", f"not done within {timeout:g} s",
                           events.current_task)
    if events.failure is not None:
        log.warning("%s", events.failure)
        raise events.failure
    if runner.status != "successful":
        raise DeployFailed(target.address, "task-failed",
                           f"ansible-playbook {runner.status} (rc {runner.rc}): {output}",
                           events.current_task)
    log.info("agent deployed to %s in %.1f s: %d tasks changed something, %d ok",
             target.address, seconds, events.changed, events.ok)
    return DeployResult(changed=events.changed, ok=events.ok, seconds=seconds,
                        playbook_digest=digest)


def write_private_files(private: Path, target: SshTarget, settings: AgentSettings,
                        wheels: Path, operator: OperatorSettings) -> Path:
    """The inventory (credentials) and the control plane's variables (the token), 0600;
    returns the inventory's path."""
    host: dict[str, Any] = {
        "ansible_host": target.address, "ansible_port": target.port,
        "ansible_user": target.username, "ansible_python_interpreter": HOST_PYTHON,
        "ansible_timeout": CONNECT_TIMEOUT,
    }
    if target.password is not None:
        host["ansible_ssh_pass"] = target.password
    if target.private_key is not None:
        key = private / "ssh_key"
        _write_secret(key, target.private_key.rstrip("\n") + "\n")
        host["ansible_ssh_private_key_file"] = str(key)
    if target.username != "root":
        host["ansible_become"] = True
        if target.password is not None:
            host["ansible_become_password"] = target.password
    inventory = private / "inventory" / "hosts.json"
    _write_secret(inventory, json.dumps({"all": {"hosts": {target.address: host}}}))
    # ansible-runner passes env/extravars after the command line's -e, so these win over
    # the operator's extra-vars file.
    _write_secret(private / "env" / "extravars", json.dumps({
        "aerie_control_plane_url": settings.control_plane_url,
        "aerie_host_uuid": settings.host_uuid,
        "aerie_agent_token": settings.token,
        "aerie_agent_wheels": str(wheels),
        "aerie_tasks_dir": str(operator.tasks_dir),
    }))
    return inventory


def operator_cmdline(operator: OperatorSettings) -> str | None:
    if operator.extra_vars is None:
        return None
    return f"-e {shlex.quote('@' + str(operator.extra_vars))}"


def ansible_environment(private: Path, control: Path,
                        operator: OperatorSettings) -> dict[str, str]:
    known_hosts = str(operator.known_hosts) if operator.known_hosts else "/dev/null"
    ssh_args = (f"-o ControlMaster=auto -o ControlPersist={CONTROL_PERSIST}s "
                f"-o UserKnownHostsFile={shlex.quote(known_hosts)}")
    return {
        "PATH": f"{ANSIBLE_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "ANSIBLE_HOST_KEY_CHECKING": str(operator.known_hosts is not None),
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_TIMEOUT": str(CONNECT_TIMEOUT),
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
    }


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _output_tail(runner: Any) -> str:
    try:
        return shorten(runner.stdout.read()[-FAILED_OUTPUT_CHARS:].strip(), FAILED_OUTPUT_CHARS)
    except (OSError, AttributeError):
        return ""


def _close_ssh_connections(control: Path) -> None:
    for socket_path in control.iterdir() if control.is_dir() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "aerie-host"],
                       capture_output=True, timeout=10, check=False)
