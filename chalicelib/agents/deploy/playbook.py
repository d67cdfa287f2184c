"""The playbook, the operator's additions to it, its digest, and how many tasks it runs."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chalicelib.agents.deploy.wheels import PROJECT_ROOT, agent_source_digest

ANSIBLE_DIR = PROJECT_ROOT / "ansible"
PLAYBOOK = ANSIBLE_DIR / "aerie-host.yml"
DEFAULT_TASKS_DIR = ANSIBLE_DIR / "site.d"
EXTRA_VARS_ENV = "AERIE_ANSIBLE_EXTRA_VARS"
TASKS_DIR_ENV = "AERIE_ANSIBLE_TASKS_DIR"
KNOWN_HOSTS_ENV = "AERIE_ANSIBLE_KNOWN_HOSTS"
ANSIBLE_BIN = Path(sys.executable).parent  # ansible-playbook is installed beside this python
LIST_TASKS_TIMEOUT = 120


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator sets through the environment (see ansible/README.md)."""

    extra_vars: Path | None  # a YAML/JSON vars file passed to every run
    tasks_dir: Path  # every *.yml there runs at the end, in name order
    known_hosts: Path | None  # when set, host keys are checked against this file

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        extra_vars = Path(env[EXTRA_VARS_ENV]) if env.get(EXTRA_VARS_ENV) else None
        if extra_vars is not None and not extra_vars.is_file():
            raise FileNotFoundError(f"{EXTRA_VARS_ENV} names {extra_vars}, which is not a file")
        known_hosts = Path(env[KNOWN_HOSTS_ENV]) if env.get(KNOWN_HOSTS_ENV) else None
        return cls(extra_vars=extra_vars,
                   tasks_dir=Path(env.get(TASKS_DIR_ENV) or DEFAULT_TASKS_DIR),
                   known_hosts=known_hosts)

    def task_files(self) -> list[Path]:
        return sorted(self.tasks_dir.glob("*.yml")) if self.tasks_dir.is_dir() else []


def playbook_digest(operator: OperatorSettings | None = None) -> str:
    """sha256 over what a deployment runs: the files under ansible/ (but its documents), the
    operator's extra-vars file and task files, and the agent's code. A host deployed with
    another digest is due for a new run."""
    operator = operator or OperatorSettings.from_env()
    digest = hashlib.sha256()
    files = [(f"ansible/{path.relative_to(ANSIBLE_DIR)}", path)
             for path in sorted(ANSIBLE_DIR.rglob("*"))
             if path.is_file() and path.suffix != ".md"]
    if operator.extra_vars is not None:
        files.append(("extra-vars", operator.extra_vars))
    files += [(f"tasks/{path.name}", path) for path in operator.task_files()]
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(agent_source_digest().encode())
    return digest.hexdigest()


def task_total(var_dir: Path, operator: OperatorSettings, digest: str) -> int:
    """How many task-start events a run fires, counted by ``ansible-playbook --list-tasks``
    once per digest. The operator's task files are imported statically for the count, as
    the playbook includes them at run time; a task file that includes others dynamically
    makes the count low (progress then raises the total as it goes)."""
    cache = var_dir / "agent-deploy" / "task-counts" / digest
    if cache.is_file():
        return int(cache.read_text())
    plays: list[dict[str, object]] = [{"import_playbook": str(PLAYBOOK)}]
    if operator.task_files():
        plays.append({"hosts": "all", "gather_facts": False,
                      "tasks": [{"import_tasks": str(path)} for path in operator.task_files()]})
    with tempfile.TemporaryDirectory(prefix="aerie-list-tasks-") as tmp:
        counting = Path(tmp) / "count.yml"
        counting.write_text(json.dumps(plays))
        done = subprocess.run(
            [str(ANSIBLE_BIN / "ansible-playbook"), "--list-tasks", "-i", "localhost,",
             str(counting)], capture_output=True, text=True, timeout=LIST_TASKS_TIMEOUT,
            env={**os.environ, "ANSIBLE_LOCAL_TEMP": tmp, "ANSIBLE_NOCOLOR": "1"}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook --list-tasks failed: {done.stderr.strip()}")
    total = count_listed_tasks(done.stdout)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(str(total))
    return total


def count_listed_tasks(listing: str) -> int:
    """The tasks in ``--list-tasks`` output: every ``TAGS:`` line but the plays'."""
    return sum(1 for line in listing.splitlines()
               if "\tTAGS: [" in line and not line.strip().startswith("play #"))
