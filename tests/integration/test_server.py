"""`aerie up` as a real process: it listens where told, says how to log in, serves many
clients at once, and stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.api import ADMIN_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
AERIE = str(Path(sys.executable).with_name("aerie"))

pytestmark = pytest.mark.slow


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], tmp_path: Path, address: str = "127.0.0.1") -> None:
        self.env = env
        self.port = _free_port(address)
        self.url = f"http://{address}:{self.port}"
        self.log = tmp_path / "aerie.log"
        self.process = subprocess.Popen(
            [AERIE, "up"], cwd=tmp_path, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "AERIE_LISTEN": f"{address}:{self.port}",
                 "AERIE_VAR_DIR": str(tmp_path / "var"), **env},
        )
        deadline = time.monotonic() + 60
        while "listening on" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@pytest.fixture
def server(db_url, tmp_path):
    running = Server({"AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD}, tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def _login(url: str, password: str) -> str:
    reply = httpx.put(f"{url}/v1/accounts/login",
                      json={"accountName": "admin", "password": password})
    assert reply.status_code == 200, reply.text
    return reply.json()["inventory"]["token"]


def test_login_create_zone_poll_job_and_read_it_back(server):
    assert f"listening on {server.url}" in server.output()
    assert "/v1/accounts/login" in server.output()
    headers = {"Authorization": f"Bearer {_login(server.url, ADMIN_PASSWORD)}"}
    accepted = httpx.post(f"{server.url}/v1/zones", json={"name": "z1"}, headers=headers)
    assert accepted.status_code == 202
    assert accepted.headers["Location"] == accepted.json()["location"]
    deadline = time.monotonic() + 10
    while (job := httpx.get(server.url + accepted.json()["location"],
                            headers=headers).json())["state"] not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["state"] == "Succeeded"
    assert job["createdAt"] <= job["startedAt"] <= job["finishedAt"]
    zone = httpx.get(f"{server.url}/v1/zones/{job['result']['uuid']}", headers=headers)
    assert zone.json()["inventory"]["name"] == "z1"
    assert httpx.get(f"{server.url}/v1/zones").status_code == 401
    garbage = httpx.post(f"{server.url}/v1/zones", content=b"\x00garbage", headers=headers)
    assert garbage.status_code == 400
    assert server.stop() == 0


def test_a_hundred_concurrent_connections(server):
    headers = {"Authorization": f"Bearer {_login(server.url, ADMIN_PASSWORD)}"}
    clients = [httpx.Client(base_url=server.url, headers=headers, timeout=30)
               for _ in range(100)]
    try:
        # Every client holds its own keep-alive connection open while all of them ask at once.
        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(lambda c: [c.get("/v1/zones").status_code
                                                for _ in range(5)], clients))
    finally:
        for client in clients:
            client.close()
    assert statuses == [[200] * 5] * 100


def test_first_start_generates_and_prints_the_admin_password(tmp_path):
    running = Server({"AERIE_DB_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
                      "AERIE_ADMIN_PASSWORD": ""}, tmp_path)
    try:
        line = next(x for x in running.output().splitlines() if "admin password" in x)
        password = line.rsplit(" ", 1)[1]
        assert _login(running.url, password)
    finally:
        assert running.stop() == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_serves_https_when_given_a_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    running = Server({"AERIE_DB_URL": f"sqlite:///{tmp_path / 'tls.db'}",
                      "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                      "AERIE_TLS_CERT": str(cert), "AERIE_TLS_KEY": str(key)}, tmp_path)
    try:
        https = running.url.replace("http://", "https://")
        assert f"listening on {https}" in running.output()
        reply = httpx.put(f"{https}/v1/accounts/login",
                          verify=ssl.create_default_context(cafile=str(cert)),
                          json={"accountName": "admin", "password": ADMIN_PASSWORD})
        assert reply.status_code == 200
    finally:
        assert running.stop() == 0


def _allowed_cpus(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to place apart")
@pytest.mark.parametrize("affinity", ["auto", "off"])
def test_the_api_and_the_engine_process_each_keep_to_their_own_cpu(db_url, tmp_path, affinity):
    running = Server({"AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                      "AERIE_CPU_AFFINITY": affinity}, tmp_path)
    try:
        [engine] = _children(running.process.pid)
        api_cpus, engine_cpus = _allowed_cpus(running.process.pid), _allowed_cpus(engine)
        ours = os.sched_getaffinity(0)
        if affinity == "auto":
            assert (api_cpus, engine_cpus) == ({sorted(ours)[-2]}, {sorted(ours)[-1]})
        else:
            assert api_cpus == engine_cpus == ours
    finally:
        assert running.stop() == 0


def test_a_second_aerie_up_on_the_same_database_stops_before_touching_it(server, tmp_path):
    headers = {"Authorization": f"Bearer {_login(server.url, ADMIN_PASSWORD)}"}
    env = {**os.environ, "AERIE_DB_URL": server.env["AERIE_DB_URL"],
           "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD, "AERIE_LISTEN": f"127.0.0.1:{_free_port()}",
           "AERIE_VAR_DIR": str(tmp_path / "second")}
    second = subprocess.run([AERIE, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "another aerie up" in second.stderr and "is using" in second.stderr, second.stderr
    assert "[engine]" not in second.stderr  # it started no engine, so resumed no job
    # The first one goes on: it still takes jobs and runs them.
    accepted = httpx.post(f"{server.url}/v1/zones", json={"name": "after"}, headers=headers)
    assert accepted.status_code == 202
    job = {"state": "Waiting"}
    deadline = time.monotonic() + 10
    while job["state"] not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = httpx.get(server.url + accepted.json()["location"], headers=headers).json()
    assert job["state"] == "Succeeded"
    assert server.stop() == 0


def test_a_taken_address_is_named_and_nothing_starts(db_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "AERIE_DB_URL": db_url, "AERIE_ADMIN_PASSWORD": ADMIN_PASSWORD,
               "AERIE_LISTEN": f"127.0.0.1:{port}", "AERIE_VAR_DIR": str(tmp_path / "var")}
        started = subprocess.run([AERIE, "up"], env=env, capture_output=True, text=True,
                                 timeout=60)
    assert started.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in started.stderr, started.stderr
    assert "Address already in use" in started.stderr
    assert "Traceback" not in started.stderr


def test_a_wrong_setting_is_named_without_a_traceback(tmp_path):
    env = {**os.environ, "AERIE_STOP_GRACE_SECONDS": "soon",
           "AERIE_VAR_DIR": str(tmp_path / "var")}
    started = subprocess.run([AERIE, "up"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 2
    assert started.stderr == ("aerie: AERIE_STOP_GRACE_SECONDS must be seconds from 0 to "
                              "3600, got 'soon'\n")


def _read_reply(client: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536) or b"!"  # a closed connection fails the parse below
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = client.recv(65536)
        assert chunk, f"the connection closed after {len(body)} of {length} bytes"
        body += chunk
    return int(lines[0].split()[1]), json.loads(body)


def test_a_request_in_hand_at_sigterm_is_answered_and_its_job_is_not_lost(server, tmp_path):
    token = _login(server.url, ADMIN_PASSWORD)
    body = b'{"name": "in-hand"}'
    head = (f"POST /v1/zones HTTP/1.1\r\nHost: aerie\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as client:
        client.sendall(head + body[:5])
        time.sleep(0.3)  # the server has the request in hand, waiting for its body
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        client.sendall(body[5:])
        status, reply = _read_reply(client)
    assert status == 202, reply
    location = reply["location"]
    assert server.process.wait(timeout=30) == 0
    # Accepted while the engine stopped, it runs (or ran) all the same.
    (tmp_path / "again").mkdir()
    again = Server(server.env, tmp_path / "again")
    try:
        headers = {"Authorization": f"Bearer {_login(again.url, ADMIN_PASSWORD)}"}
        job = {"state": "Waiting"}
        deadline = time.monotonic() + 10
        while job["state"] not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            job = httpx.get(again.url + location, headers=headers).json()
            time.sleep(0.05)
        assert job["state"] == "Succeeded", job
    finally:
        assert again.stop() == 0
