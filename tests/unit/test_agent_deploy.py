"""The agent deployment without a host: how events become progress and failures, what the
private files and the environment hold, what the digest covers, the task count, and the
wheels the control plane ships. (tests/e2e/test_agent_deploy.py runs it against a host.)"""
from __future__ import annotations

import io
import json
import zipfile
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import ansible_runner
import pytest

from chalicelib.agents.deploy import (
    AgentSettings,
    DeployFailed,
    DeployProgress,
    OperatorSettings,
    SshTarget,
    deploy_agent,
    playbook_digest,
)
from chalicelib.agents.deploy.events import PlaybookEvents, failure_message
from chalicelib.agents.deploy.playbook import (
    DEFAULT_TASKS_DIR,
    EXTRA_VARS_ENV,
    KNOWN_HOSTS_ENV,
    TASKS_DIR_ENV,
    count_listed_tasks,
    task_total,
)
from chalicelib.agents.deploy.runner import (
    ansible_environment,
    operator_cmdline,
    write_private_files,
)
from chalicelib.agents.deploy.wheels import repack_wheel, runtime_distributions

SETTINGS = AgentSettings("http://10.0.0.1:8080", "host-uuid", "the-token")


def task_start(name: str, handler: bool = False) -> dict:
    return {"event": "playbook_on_task_start",
            "event_data": {"task": name, "is_conditional": handler}}


def events_with(total: int = 3) -> tuple[PlaybookEvents, list[DeployProgress]]:
    seen: list[DeployProgress] = []
    return PlaybookEvents("10.0.0.9", total, seen.append), seen


# -- events ------------------------------------------------------------------------------------

def test_each_task_start_is_one_step_of_progress_and_handlers_are_not():
    events, seen = events_with(total=2)
    for event in (task_start("Install packages"), task_start("Restart libvirtd", handler=True),
                  task_start("Start the agent")):
        assert events.handle(event) is False  # nothing kept on disk
    assert seen == [DeployProgress(1, 2, "Install packages"),
                    DeployProgress(2, 2, "Start the agent")]


def test_more_tasks_than_counted_raise_the_total_instead_of_passing_it():
    events, seen = events_with(total=1)
    events.handle(task_start("a"))
    events.handle(task_start("b"))
    assert [(p.task_number, p.task_total) for p in seen] == [(1, 1), (2, 2)]


@pytest.mark.parametrize(("message", "reason"), [
    ("Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: "
     "No route to host", "unreachable"),
    ("Failed to connect to the host via ssh: Connection timed out during banner exchange",
     "unreachable"),
    ("Invalid/incorrect password: Permission denied, please try again.", "authentication"),
    ("Failed to connect to the host via ssh: root@10.0.0.9: Permission denied "
     "(publickey,password).", "authentication"),
])
def test_an_unreachable_host_is_told_apart_from_refused_credentials(message, reason):
    events, _ = events_with()
    events.handle(task_start("Find the service manager"))
    events.handle({"event": "runner_on_unreachable",
                   "event_data": {"task": "Find the service manager", "res": {"msg": message}}})
    assert events.failure is not None
    assert events.failure.reason == reason
    assert events.failure.task == "Find the service manager"
    assert events.failure.address == "10.0.0.9"


def test_the_first_failed_task_is_the_failure_and_ignored_errors_are_not():
    events, _ = events_with()
    events.handle({"event": "runner_on_failed", "event_data": {
        "task": "Probe", "ignore_errors": True, "res": {"msg": "expected"}}})
    events.handle({"event": "runner_on_failed", "event_data": {
        "task": "Install the agent", "res": {"msg": "non-zero return code",
                                             "stderr": "one\ntwo\nthree\nERROR: no wheel"}}})
    events.handle({"event": "runner_on_failed", "event_data": {
        "task": "Later", "res": {"msg": "a consequence"}}})
    failure = events.failure
    assert failure is not None
    assert (failure.reason, failure.task) == ("task-failed", "Install the agent")
    assert failure.message == "non-zero return code: two / three / ERROR: no wheel"
    assert "Install the agent" in str(failure) and "10.0.0.9" in str(failure)


def test_the_recap_gives_changed_and_ok_counts():
    events, _ = events_with()
    events.handle({"event": "playbook_on_stats",
                   "event_data": {"changed": {"10.0.0.9": 4}, "ok": {"10.0.0.9": 17}}})
    assert (events.changed, events.ok) == (4, 17)


def test_a_failed_loop_is_explained_by_its_failed_item_and_long_messages_are_cut():
    result = {"msg": "One or more items failed", "results": [
        {"failed": False, "msg": "fine"}, {"failed": True, "msg": "x" * 2000}]}
    message = failure_message(result)
    assert message.startswith("xxx") and len(message) <= 600


# -- a whole run, with ansible-runner replaced -------------------------------------------------

@pytest.fixture
def fake_runner(monkeypatch, tmp_path):
    """ansible-runner replaced by a script: the events it fires and how the run ends."""
    monkeypatch.setattr("chalicelib.agents.deploy.runner.agent_wheels", lambda var_dir: tmp_path)
    monkeypatch.setattr("chalicelib.agents.deploy.runner.task_total",
                        lambda var_dir, operator, digest: 2)
    script = SimpleNamespace(events=[], status="successful", stdout="", private_modes={})

    def run(**kwargs):
        private = Path(kwargs["private_data_dir"])
        script.private_modes = {path.name: path.stat().st_mode & 0o777
                                for path in private.rglob("*") if path.is_file()}
        for event in script.events:
            kwargs["event_handler"](event)
        return SimpleNamespace(status=script.status, rc=2, stdout=io.StringIO(script.stdout))

    monkeypatch.setattr(ansible_runner, "run", run)
    return script


def deploy(tmp_path: Path, **kwargs) -> object:
    target = SshTarget("10.0.0.9", 22, "root", password="pw")
    return deploy_agent(target, SETTINGS, var_dir=tmp_path / "var", **kwargs)


def test_a_run_reports_progress_and_the_recap_and_leaves_no_private_files(fake_runner,
                                                                          tmp_path):
    fake_runner.events = [task_start("One"), task_start("Two"), {
        "event": "playbook_on_stats", "event_data": {"changed": {"h": 1}, "ok": {"h": 2}}}]
    seen: list[DeployProgress] = []

    result = deploy(tmp_path, on_progress=seen.append)

    assert (result.changed, result.ok) == (1, 2)
    assert result.playbook_digest == playbook_digest()
    assert [p.task_name for p in seen] == ["One", "Two"]
    assert fake_runner.private_modes == {"hosts.json": 0o600, "extravars": 0o600}
    assert not any((tmp_path / "var" / "agent-deploy" / "runs").iterdir())


def test_a_run_that_times_out_fails_as_timeout_in_the_task_it_was_running(fake_runner,
                                                                          tmp_path):
    fake_runner.events = [task_start("Install the agent from the wheels")]
    fake_runner.status = "timeout"

    with pytest.raises(DeployFailed) as failed:
        deploy(tmp_path, timeout=30)

    assert failed.value.reason == "timeout"
    assert failed.value.task == "Install the agent from the wheels"
    assert not any((tmp_path / "var" / "agent-deploy" / "runs").iterdir())


def test_a_run_that_fails_before_any_task_fails_with_ansibles_output(fake_runner, tmp_path):
    fake_runner.status = "failed"
    fake_runner.stdout = "ERROR! the playbook: … could not be found"

    with pytest.raises(DeployFailed) as failed:
        deploy(tmp_path)

    assert (failed.value.reason, failed.value.task) == ("task-failed", None)
    assert "could not be found" in failed.value.message


# -- secrets, private files, environment ------------------------------------------------------

def test_secrets_stay_out_of_reprs():
    target = SshTarget("10.0.0.9", 22, "admin", password="pw-123", private_key="KEY-456")
    assert "pw-123" not in repr(target) and "KEY-456" not in repr(target)
    assert "the-token" not in repr(SETTINGS)


def test_private_files_hold_the_credentials_0600_and_become_is_for_users_but_root(tmp_path):
    operator = OperatorSettings(extra_vars=None, tasks_dir=tmp_path / "site.d", known_hosts=None)
    target = SshTarget("10.0.0.9", 2222, "admin", password="pw", private_key="KEY")

    inventory = write_private_files(tmp_path, target, SETTINGS, Path("/wheels"), operator)

    host = json.loads(inventory.read_text())["all"]["hosts"]["10.0.0.9"]
    assert (host["ansible_port"], host["ansible_user"], host["ansible_ssh_pass"]) == (
        2222, "admin", "pw")
    assert host["ansible_become"] is True and host["ansible_become_password"] == "pw"
    key = Path(host["ansible_ssh_private_key_file"])
    assert key.read_text() == "KEY\n"
    extravars = tmp_path / "env" / "extravars"
    assert json.loads(extravars.read_text())["aerie_agent_token"] == "the-token"
    for path in (inventory, key, extravars):
        assert path.stat().st_mode & 0o777 == 0o600

    root = SshTarget("10.0.0.9", 22, "root", password="pw")
    inventory = write_private_files(tmp_path / "root", root, SETTINGS, Path("/w"), operator)
    assert "ansible_become" not in json.loads(inventory.read_text())["all"]["hosts"]["10.0.0.9"]


def test_host_keys_are_not_checked_unless_the_operator_gives_known_hosts(tmp_path):
    unchecked = OperatorSettings(None, tmp_path, known_hosts=None)
    env = ansible_environment(tmp_path, tmp_path / "cp", unchecked)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert "UserKnownHostsFile=/dev/null" in env["ANSIBLE_SSH_ARGS"]
    assert env["PATH"].split(":")[0].endswith("/bin")  # the venv's, for ansible-playbook

    checked = OperatorSettings(None, tmp_path, known_hosts=Path("/etc/aerie/known_hosts"))
    env = ansible_environment(tmp_path, tmp_path / "cp", checked)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "UserKnownHostsFile=/etc/aerie/known_hosts" in env["ANSIBLE_SSH_ARGS"]


# -- operator settings, digest, task count ----------------------------------------------------

def test_operator_settings_come_from_the_environment(tmp_path):
    extra = tmp_path / "vars.yml"
    extra.write_text("aerie_agent_home: /srv/aerie\n")
    operator = OperatorSettings.from_env({EXTRA_VARS_ENV: str(extra),
                                          TASKS_DIR_ENV: str(tmp_path),
                                          KNOWN_HOSTS_ENV: "/k"})
    assert (operator.extra_vars, operator.tasks_dir, operator.known_hosts) == (
        extra, tmp_path, Path("/k"))
    assert operator_cmdline(operator) == f"-e @{extra}"
    assert OperatorSettings.from_env({}).tasks_dir == DEFAULT_TASKS_DIR
    with pytest.raises(FileNotFoundError, match=EXTRA_VARS_ENV):
        OperatorSettings.from_env({EXTRA_VARS_ENV: str(tmp_path / "missing.yml")})


def test_the_digest_changes_with_the_operators_vars_and_task_files(tmp_path):
    extra = tmp_path / "vars.yml"
    extra.write_text("a: 1\n")
    tasks = tmp_path / "site.d"
    tasks.mkdir()
    operator = OperatorSettings(extra, tasks, None)
    digests = [playbook_digest(operator)]
    extra.write_text("a: 2\n")
    digests.append(playbook_digest(operator))
    (tasks / "10-x.yml").write_text("- ansible.builtin.debug: msg=x\n")
    digests.append(playbook_digest(operator))
    (tasks / "notes.txt").write_text("not a task file\n")
    digests.append(playbook_digest(operator))
    assert len(set(digests)) == 3 and digests[2] == digests[3]


def test_the_task_count_lists_the_playbook_and_the_operators_task_files(tmp_path):
    tasks = tmp_path / "site.d"
    tasks.mkdir()
    bare = task_total(tmp_path / "var", OperatorSettings(None, tasks, None), "digest-a")
    (tasks / "10-two.yml").write_text("- ansible.builtin.debug: msg=1\n"
                                      "- ansible.builtin.debug: msg=2\n")
    hooked = task_total(tmp_path / "var", OperatorSettings(None, tasks, None), "digest-b")
    assert bare > 10
    assert hooked == bare + 2
    assert (tmp_path / "var" / "agent-deploy" / "task-counts" / "digest-b").read_text() == str(
        hooked)


def test_listed_tasks_are_the_tags_lines_but_the_plays():
    listing = ("\nplaybook: x.yml\n\n  play #1 (all): Prepare\tTAGS: []\n    tasks:\n"
               "      common : Check\tTAGS: []\n      Run hooks\tTAGS: [x]\n\n"
               "  play #2 (all): all\tTAGS: []\n    tasks:\n      Hook one\tTAGS: []\n")
    assert count_listed_tasks(listing) == 3


# -- wheels --------------------------------------------------------------------------------------

def test_the_shipped_dependencies_are_httpx_and_what_it_needs():
    names = {dist.metadata["Name"].lower() for dist in runtime_distributions()}
    assert {"httpx", "httpcore", "h11", "anyio", "idna", "certifi"} <= names
    assert "boto3" not in names  # only --sqs needs it


def test_a_repacked_wheel_holds_the_installed_files_and_a_true_record(tmp_path):
    dist = metadata.distribution("h11")
    wheel = repack_wheel(dist, tmp_path)
    assert wheel.name == f"h11-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(f"h11-{dist.version}.dist-info/RECORD").decode()
    assert "h11/__init__.py" in names
    assert not any("__pycache__" in name or name.endswith("INSTALLER") for name in names)
    assert {line.split(",")[0] for line in record.splitlines()} == names
