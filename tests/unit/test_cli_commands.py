"""The one-shot commands against a fake server (httpx.MockTransport): what is sent, what is
printed, and the exit status."""
from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from cli.commands import Cli, describe_job

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "openapi.json").read_text())
URL = "http://aerie.test:8080"
UUID = "0123456789abcdef0123456789abcdef"


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.jobs: dict[str, list[dict]] = {}
        self.replies: dict[tuple[str, str], httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/openapi.json":
            return httpx.Response(200, json=DOCUMENT)
        if path.startswith("/v1/api-jobs/"):
            states = self.jobs[path.rsplit("/", 1)[1]]
            return httpx.Response(200, json=states.pop(0) if len(states) > 1 else states[0])
        if (request.method, path) in self.replies:
            return self.replies[(request.method, path)]
        return httpx.Response(404, json={"error": {"code": "ResourceNotFound",
                                                   "message": f"nothing at {path}"}})

    def accept(self, method: str, path: str, job_states: list[dict]) -> None:
        self.jobs["j1"] = job_states
        self.replies[(method, path)] = httpx.Response(
            202, json={"jobUuid": "j1", "location": "/v1/api-jobs/j1"})


@pytest.fixture
def server():
    return FakeServer()


@pytest.fixture
def run(server, tmp_path):
    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        cli = Cli(out=Console(file=out, width=200), err=Console(file=err, width=200),
                  home=tmp_path / "home", env={"AERIE_URL": URL},
                  transport=httpx.MockTransport(server))
        status = cli.run(list(argv))
        return status, out.getvalue(), err.getvalue()
    return run


def _login(server, run):
    server.replies[("PUT", "/v1/accounts/login")] = httpx.Response(200, json={"inventory": {
        "uuid": "s1", "token": "tok", "accountUuid": "a1", "expiredDate": "later"}})
    assert run("login", "--account", "admin", "--password", "pw")[0] == 0


def test_login_keeps_the_session_and_logout_ends_it_on_the_server(server, run, tmp_path):
    _login(server, run)
    login = next(r for r in server.requests if r.url.path == "/v1/accounts/login")
    assert json.loads(login.content) == {"accountName": "admin", "password": "pw"}
    session = tmp_path / "home" / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert json.loads(session.read_text())["token"] == "tok"
    server.replies[("DELETE", "/v1/accounts/sessions/s1")] = httpx.Response(200, json={})
    status, out, _ = run("logout")
    assert status == 0 and "logged out" in out
    logout = server.requests[-1]
    assert (logout.method, logout.url.path) == ("DELETE", "/v1/accounts/sessions/s1")
    assert logout.headers["Authorization"] == "Bearer tok"
    assert not session.exists()


def test_a_wrong_password_is_the_servers_error(server, run):
    server.replies[("PUT", "/v1/accounts/login")] = httpx.Response(401, json={"error": {
        "code": "Unauthenticated", "message": "wrong account name or password"}})
    status, _, err = run("login", "--password", "nope")
    assert status == 1 and "Unauthenticated: wrong account name or password" in err


def test_an_async_call_waits_for_its_job_and_prints_the_result(server, run):
    _login(server, run)
    server.accept("POST", "/v1/zones", [
        {"uuid": "j1", "state": "Waiting", "position": 1},
        {"uuid": "j1", "state": "Running"},
        {"uuid": "j1", "state": "Succeeded", "result": {"uuid": UUID, "name": "z1"}}])
    status, out, _ = run("CreateZone", "name=z1")
    assert status == 0
    assert UUID in out and "z1" in out
    create = next(r for r in server.requests if r.method == "POST")
    assert json.loads(create.content) == {"name": "z1"}
    assert create.headers["Authorization"] == "Bearer tok"
    assert [r.url.path for r in server.requests].count("/v1/api-jobs/j1") == 3


def test_a_failed_flow_names_its_step_and_rollbacks_on_stderr(server, run):
    _login(server, run)
    error = {"code": "FlowFailed", "message": "step vm.allocate-host failed: no host",
             "details": {"flow": "create-vm", "state": "Failed", "failedStep": "vm.start",
                         "error": {"code": "AgentCommandFailed", "message": "no such bridge"},
                         "rollbacks": [{"step": "vm.start", "succeeded": True},
                                       {"step": "vm.allocate-host", "succeeded": False,
                                        "error": {"code": "StepFailed", "message": "boom"}}]}}
    server.accept("PUT", f"/v1/vm-instances/{UUID}/actions/start", [
        {"uuid": "j1", "state": "Running",
         "progress": {"flow": "create-vm", "state": "Running", "currentStep": "vm.start"}},
        {"uuid": "j1", "state": "Failed", "error": error}])
    status, out, err = run("StartVmInstance", f"uuid={UUID}")
    assert status == 1 and out == ""
    assert "FlowFailed: step vm.allocate-host failed: no host" in err
    assert "step vm.start failed (AgentCommandFailed: no such bridge)" in err
    assert "rolled back vm.start" in err
    assert "rollback of vm.allocate-host failed: StepFailed: boom" in err


def test_json_prints_the_raw_reply(server, run):
    _login(server, run)
    rows = [{"uuid": UUID, "name": "z1", "state": "Enabled", "type": "zstack"}]
    server.replies[("GET", "/v1/zones")] = httpx.Response(200, json={"inventories": rows})
    status, out, _ = run("QueryZone", "name~=z%", "cluster.name=c1", "limit=5", "--json")
    assert status == 0 and json.loads(out) == {"inventories": rows}
    query = server.requests[-1]
    assert query.url.params.get_list("q") == ["name~=z%", "cluster.name=c1"]
    assert query.url.params["limit"] == "5"


def test_a_listing_shows_uuid_name_state_and_the_fields_asked_for(server, run):
    _login(server, run)
    rows = [{"uuid": UUID, "name": "z1", "state": "Enabled", "type": "zstack",
             "description": "first"}]
    server.replies[("GET", "/v1/zones")] = httpx.Response(200, json={"inventories": rows})
    _, out, _ = run("QueryZone")
    header = out.splitlines()[1]
    assert header.split() == ["uuid", "name", "state"]
    _, out, _ = run("QueryZone", "fields=uuid,description")
    assert out.splitlines()[1].split() == ["uuid", "name", "state", "description"]
    assert "first" in out and "1 result" in out


def test_an_inventory_is_a_key_value_table(server, run):
    _login(server, run)
    server.replies[("GET", f"/v1/zones/{UUID}")] = httpx.Response(200, json={"inventory": {
        "uuid": UUID, "name": "z1", "state": "Enabled"}})
    status, out, _ = run("GetZone", f"uuid={UUID}")
    assert status == 0
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert ["uuid", UUID] in lines and ["name", "z1"] in lines


def test_an_api_error_is_its_code_and_message_with_status_1(server, run):
    _login(server, run)
    status, out, err = run("GetZone", f"uuid={UUID}")
    assert status == 1 and out == ""
    assert f"ResourceNotFound: nothing at /v1/zones/{UUID}" in err


def test_usage_errors_exit_2_and_send_nothing(server, run):
    _login(server, run)
    sent = len(server.requests)
    status, _, err = run("CreateZon", "name=z1")
    assert status == 2 and "unknown operation 'CreateZon'" in err and "CreateZone" in err
    status, _, err = run("CreateZone", "nme=z1")
    assert status == 2 and "valid parameters" in err
    status, _, err = run("CreateCluster", "name=c1")
    assert status == 2 and "CreateCluster needs zoneUuid=…" in err
    assert not [r for r in server.requests[sent:] if r.url.path != "/v1/openapi.json"]


def test_the_document_is_cached_and_offline_the_packaged_one_is_used(server, run, tmp_path):
    _login(server, run)
    fetched = [r for r in server.requests if r.url.path == "/v1/openapi.json"]
    assert len(fetched) == 1
    assert list((tmp_path / "home" / "openapi").glob("*.json"))
    run("GetZone", f"uuid={UUID}")
    assert len([r for r in server.requests if r.url.path == "/v1/openapi.json"]) == 1

    def offline(request):
        raise httpx.ConnectError("refused")

    err = io.StringIO()
    cli = Cli(out=Console(file=io.StringIO()), err=Console(file=err),
              home=tmp_path / "elsewhere", env={"AERIE_URL": URL},
              transport=httpx.MockTransport(offline))
    assert cli.run(["CreateZone", "--help"]) == 0  # the packaged document knows it
    assert cli.run(["GetZone", f"uuid={UUID}"]) == 1
    assert "cannot reach http://aerie.test:8080" in err.getvalue()


def test_help_of_an_operation_lists_its_parameters(run):
    status, out, _ = run("CreateVmInstance", "--help")
    assert status == 0
    assert "POST /v1/vm-instances" in out and "l3NetworkUuids" in out and "required" in out


def test_an_operation_missing_from_the_cached_document_is_looked_up_again(server, run, tmp_path):
    from cli.session import DocumentCache

    older = json.loads(json.dumps(DOCUMENT))
    del older["paths"]["/v1/zones"]["post"]
    DocumentCache(tmp_path / "home").save(URL, older)
    _login(server, run)  # login refreshes the document anyway: put the old one back
    DocumentCache(tmp_path / "home").save(URL, older)
    fetched = len([r for r in server.requests if r.url.path == "/v1/openapi.json"])
    server.accept("POST", "/v1/zones", [{"uuid": "j1", "state": "Succeeded",
                                         "result": {"uuid": UUID, "name": "z1"}}])
    status, out, _ = run("CreateZone", "name=z1")
    assert status == 0 and UUID in out
    assert len([r for r in server.requests if r.url.path == "/v1/openapi.json"]) == fetched + 1


def test_a_running_job_shows_its_queue_place_step_and_what_the_step_is_doing():
    assert describe_job("CreateVmInstance", {"state": "Waiting", "position": 2,
                                             "signature": "vm:v1"}) == \
        "CreateVmInstance: Waiting (2 ahead in vm:v1)"
    assert describe_job("AddKvmHost", {"state": "Running", "progress": {
        "flow": "connect-host", "currentStep": "host.deploy-agent",
        "detail": {"task": 7, "tasks": 23, "taskName": "Install the agent"}}}) == \
        "AddKvmHost: Running · connect-host: host.deploy-agent (task 7/23: Install the agent)"
