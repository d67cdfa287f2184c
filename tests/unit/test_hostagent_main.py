"""The aerie-agent process: its settings, and a real run against a tiny HTTP control plane
that it leaves cleanly on SIGTERM, in the middle of a long poll."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hostagent.config import parse_config
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.main import build_driver

HOST = "9f8e7d6c5b4a43218f7e6d5c4b3a2918"
REPO = Path(__file__).resolve().parents[2]


def test_options_come_from_the_environment_and_the_command_line_wins(tmp_path):
    env = {"AERIE_AGENT_URL": "http://cp:8080", "AERIE_AGENT_HOST_UUID": HOST,
           "AERIE_AGENT_TOKEN": "from-env", "AERIE_AGENT_DRIVER": "simulator",
           "AERIE_AGENT_STATE_DIR": str(tmp_path), "AERIE_AGENT_SIM_CPU_NUM": "4",
           "AERIE_AGENT_SIM_FAIL_COMMANDS": "vm.start,vm.stop"}
    config = parse_config(["--token", "from-cli"], env)
    assert (config.url, config.host_uuid, config.token) == ("http://cp:8080", HOST, "from-cli")
    assert config.driver == "simulator" and config.libvirt_uri == "qemu:///system"
    assert config.simulator.cpu_num == 4
    assert config.journal_path == tmp_path / f"{HOST}.journal.json"
    driver = build_driver(config)
    assert isinstance(driver, SimulatorDriver) and driver.cpu_num == 4
    assert set(driver.failures) == {"vm.start", "vm.stop"}


def test_missing_required_options_exit_with_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        parse_config(["--url", "http://cp"], {})
    assert caught.value.code == 2
    assert "--host-uuid (or AERIE_AGENT_HOST_UUID) is required" in capsys.readouterr().err


class ControlPlane(BaseHTTPRequestHandler):
    """Hands out one ping command, records reports, then long-polls like the real one."""

    reports: list[dict] = []
    handed_out = threading.Event()
    auth: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.auth.append(self.headers["Authorization"])
        if not self.handed_out.is_set():
            self.handed_out.set()
            self._json({"commands": [{"id": "cmd-1", "name": "ping", "args": {}}]})
            return
        time.sleep(20)  # a long poll with nothing to say
        self._json({"commands": []})

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        self.reports.append(json.loads(self.rfile.read(length)))
        self._json({"pingInterval": 60})

    def _json(self, body):
        data = json.dumps(body).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the agent left

    def log_message(self, *args):
        pass


def test_agent_process_syncs_runs_a_command_and_stops_on_sigterm(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ControlPlane)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "hostagent.main", "--url", url, "--host-uuid", HOST,
         "--token", "tok", "--driver", "simulator", "--state-dir", str(tmp_path)],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while len(ControlPlane.reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # into the long poll
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        stop_seconds = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
        server.shutdown()
    logs = process.stderr.read()
    assert code == 0, logs
    assert stop_seconds < 5, "SIGTERM should end a long poll at once"
    sync, results = ControlPlane.reports[:2]
    assert sync["results"] == [] and sync["facts"]["hostname"] == "sim-9f8e7d6c"
    assert sync["vms"] == []
    assert results["results"] == [{"id": "cmd-1", "ok": True, "result": {}, "error": None}]
    assert set(ControlPlane.auth) == {"Agent tok"}
    assert "command cmd-1 ping: ok" in logs and "SIGTERM received: stopping" in logs
    journal = json.loads((tmp_path / f"{HOST}.journal.json").read_text())
    assert [r["id"] for r in journal["results"]] == ["cmd-1"]
