"""``aerie-fleet``: many simulated hosts in one process, each a real agent (the same loop,
journal and simulator driver as ``aerie-agent --driver simulator``) polling the control plane
like any other — for load tests of a serverless or remote control plane.

    aerie-fleet --url URL --hosts FILE [--sqs]

FILE has one host a line: ``<host uuid> <agent token>`` (from AddKvmHost with
deployAgent=false); with ``--sqs`` each agent takes its commands from its host's queue with
the credentials the control plane issues it, as ``aerie-agent --sqs`` does. Each agent runs
on a thread of its own, so a fleet is meant for hundreds of hosts; the embedded control plane
runs its own simulator hosts in bulk instead (AddSimulatorHost).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostagent.agent import Agent
from hostagent.drivers.simulator import SimulatorDriver
from hostagent.http_transport import HttpTransport
from hostagent.main import sqs_transport
from hostagent.transport import Transport

log = logging.getLogger("hostagent.fleet")


@dataclass(frozen=True)
class FleetHost:
    uuid: str
    token: str


def read_hosts(path: Path) -> list[FleetHost]:
    hosts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected '<host uuid> <token>'")
        hosts.append(FleetHost(*fields))
    return hosts


class Fleet:
    def __init__(self, hosts: list[FleetHost], transport: Callable[[FleetHost], Transport]):
        self.stop = threading.Event()
        self.agents = [Agent(SimulatorDriver(hostname=f"sim-{h.uuid[:8]}"), transport(h),
                             stop=self.stop) for h in hosts]
        self._threads = [threading.Thread(target=agent.run, name=f"fleet-{n}", daemon=True)
                         for n, agent in enumerate(self.agents)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for agent in self.agents:
            agent.transport.close()


def http_transports(url: str) -> Callable[[FleetHost], Transport]:
    return lambda host: HttpTransport(url, host.uuid, host.token)


def sqs_transports(url: str) -> Callable[[FleetHost], Transport]:
    return lambda host: sqs_transport(HttpTransport(url, host.uuid, host.token))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aerie-fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--hosts", type=Path, required=True)
    parser.add_argument("--sqs", action="store_true", help="commands from each host's queue")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hosts = read_hosts(args.hosts)
    fleet = Fleet(hosts, (sqs_transports if args.sqs else http_transports)(args.url))
    signal.signal(signal.SIGTERM, lambda *_: fleet.stop.set())
    signal.signal(signal.SIGINT, lambda *_: fleet.stop.set())
    fleet.start()
    print(f"aerie-fleet: {len(hosts)} simulated hosts polling {args.url}", flush=True)
    fleet.stop.wait()
    fleet.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
