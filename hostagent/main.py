"""``aerie-agent``: the host agent process. SIGTERM (or Ctrl-C) stops it cleanly."""
from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from hostagent.agent import Agent, Interrupted
from hostagent.config import AgentConfig, parse_config
from hostagent.drivers.base import Driver
from hostagent.http_transport import HttpTransport
from hostagent.journal import CommandJournal
from hostagent.transport import Transport

log = logging.getLogger("hostagent")


def build_driver(config: AgentConfig) -> Driver:
    if config.driver == "simulator":
        from hostagent.drivers.simulator import SimulatorDriver

        sim = config.simulator
        driver = SimulatorDriver(
            cpu_num=sim.cpu_num, memory_bytes=sim.memory_bytes, latency=sim.latency,
            failure_probability=sim.failure_probability, seed=sim.seed,
            hostname=f"sim-{config.host_uuid[:8]}", state_path=config.simulator_state_path)
        for name in sim.fail_commands:
            driver.fail_command(name)
        return driver
    from hostagent.drivers.dhcp import DhcpServers
    from hostagent.drivers.libvirt_driver import LibvirtDriver, has_host_network

    dhcp = (DhcpServers(config.state_dir, config.host_uuid)
            if has_host_network(config.libvirt_uri) else None)
    return LibvirtDriver(config.libvirt_uri, domain_type=config.domain_type, dhcp=dhcp)


def sqs_transport(control_plane: HttpTransport) -> Transport:
    from hostagent.queue_access import IssuedQueueAccess
    from hostagent.sqs_transport import SqsTransport

    return SqsTransport(IssuedQueueAccess(control_plane.fetch_queue_access), control_plane)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        driver = build_driver(config)
    except ImportError as exc:
        log.error("the %s driver cannot load: %s (install libvirt-python)", config.driver, exc)
        return 2
    transport = HttpTransport(config.url, config.host_uuid, config.token)
    if config.sqs:
        transport = sqs_transport(transport)
    agent = Agent(driver, transport, journal=CommandJournal(config.journal_path))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        agent.stop.set()
        if agent.fetching:
            raise Interrupted  # abandon the long poll; nothing is lost by that

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("host %s, control plane %s, state in %s", config.host_uuid, config.url,
             config.state_dir)
    try:
        agent.run()
    finally:
        transport.close()
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
