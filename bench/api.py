"""Requests/s and latency of GET /v1/zones/{uuid} with 50 concurrent clients against `aerie up`.

    .venv/bin/python bench/api.py [--seconds 10] [--clients 50] [--db-url URL]

Starts its own `aerie up` on a free port (SQLite under a temporary directory unless --db-url
names another database), creates one zone, then drives it with a lean keep-alive HTTP/1.1
load generator (asyncio, raw sockets) so the client costs little of the machine's CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from aerie_process import start_aerie

PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, method: str, path: str, body: dict | None = None, token: str | None = None):
    request = urllib.request.Request(url + path, method=method,
                                     data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as reply:
        return json.loads(reply.read())


def start_server(port: int, workdir: Path, db_url: str | None) -> subprocess.Popen:
    env = {"AERIE_ADMIN_PASSWORD": PASSWORD, **({"AERIE_DB_URL": db_url} if db_url else {})}
    return start_aerie(port, workdir, env)


async def client(port: int, request: bytes, stop_at: float, latencies: list[float],
                 errors: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed a keep-alive connection")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if not status_line.startswith(b"HTTP/1.1 200"):
            errors.append(status_line)
    writer.close()


async def drive(port: int, path: str, token: str, clients: int, seconds: float):
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    latencies: list[float] = []
    errors: list[bytes] = []
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(port, request, stop_at, latencies, errors)
                           for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--db-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        server = start_server(port, Path(workdir), args.db_url)
        try:
            url = f"http://127.0.0.1:{port}"
            token = call(url, "PUT", "/v1/accounts/login",
                         {"accountName": "admin", "password": PASSWORD})["inventory"]["token"]
            job = call(url, "POST", "/v1/zones", {"name": f"bench-{port}"}, token)
            while (state := call(url, "GET", job["location"], token=token))["state"] in (
                    "Waiting", "Running"):
                time.sleep(0.01)
            path = f"/v1/zones/{state['result']['uuid']}"
            asyncio.run(drive(port, path, token, args.clients, 1.0))  # warm up
            latencies, errors, elapsed = asyncio.run(
                drive(port, path, token, args.clients, args.seconds))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"GET /v1/zones/{{uuid}}, {args.clients} concurrent clients, {args.seconds:.0f} s, "
          f"database {'SQLite' if not args.db_url else args.db_url.split(':')[0]}")
    print(f"  requests/s: {len(latencies) / elapsed:,.0f}")
    print(f"  latency p50: {statistics.median(latencies) * 1000:.1f} ms   "
          f"p99: {p99 * 1000:.1f} ms")
    print(f"  non-200 replies: {len(errors)} {sorted(set(errors))[:3]}")


if __name__ == "__main__":
    main()
