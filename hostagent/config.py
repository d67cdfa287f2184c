"""The agent's settings: command-line options, each also readable from AERIE_AGENT_*."""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hostagent.drivers import DRIVER_NAMES

ENV_PREFIX = "AERIE_AGENT_"


@dataclass(frozen=True)
class SimulatorOptions:
    cpu_num: int = 32
    memory_bytes: int = 128 << 30
    latency: float = 0.0
    failure_probability: float = 0.0
    seed: int | None = None
    fail_commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentConfig:
    url: str
    host_uuid: str
    token: str
    driver: str = "libvirt"
    libvirt_uri: str = "qemu:///system"
    domain_type: str | None = None
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    log_level: str = "INFO"
    # Serverless: commands come from the host's own SQS queue, with credentials the control
    # plane issues for that queue alone; reports still go to --url.
    sqs: bool = False
    simulator: SimulatorOptions = field(default_factory=SimulatorOptions)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / f"{self.host_uuid}.journal.json"

    @property
    def simulator_state_path(self) -> Path:
        return self.state_dir / f"{self.host_uuid}.simulator.json"


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/aerie-agent")
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "aerie-agent"


def parse_config(argv: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> AgentConfig:
    env = os.environ if env is None else env
    parser = _parser(env)
    options = parser.parse_args(argv)
    for required in ("url", "host_uuid", "token"):
        if not getattr(options, required):
            flag = "--" + required.replace("_", "-")
            parser.error(f"{flag} (or {ENV_PREFIX}{required.upper()}) is required")
    return AgentConfig(
        url=options.url, host_uuid=options.host_uuid, token=options.token,
        driver=options.driver, libvirt_uri=options.libvirt_uri,
        domain_type=options.domain_type or None,
        state_dir=Path(options.state_dir) if options.state_dir else default_state_dir(),
        log_level=options.log_level.upper(), sqs=options.sqs,
        simulator=SimulatorOptions(
            cpu_num=options.sim_cpu_num, memory_bytes=options.sim_memory_bytes,
            latency=options.sim_latency, failure_probability=options.sim_failure_probability,
            seed=options.sim_seed, fail_commands=tuple(options.sim_fail_command)))


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: object = None) -> object:
        return env.get(ENV_PREFIX + name, fallback)

    sim = SimulatorOptions()
    parser = argparse.ArgumentParser(
        prog="aerie-agent", description="Aerie host agent: runs the control plane's commands "
        f"on this host's hypervisor. Every option can also be set as {ENV_PREFIX}<NAME>.")
    parser.add_argument("--url", default=default("URL"), help="control plane base URL")
    parser.add_argument("--host-uuid", default=default("HOST_UUID"))
    parser.add_argument("--token", default=default("TOKEN"), help="the host's agent token")
    parser.add_argument("--driver", choices=DRIVER_NAMES, default=default("DRIVER", "libvirt"))
    parser.add_argument("--libvirt-uri", default=default("LIBVIRT_URI", "qemu:///system"))
    parser.add_argument("--domain-type", choices=("kvm", "qemu"),
                        default=default("DOMAIN_TYPE"),
                        help="libvirt domain type (default: kvm when usable, else qemu)")
    parser.add_argument("--state-dir", default=default("STATE_DIR"),
                        help="where the command journal and the DHCP servers' files live; "
                             "dnsmasq reads the latter as nobody, so every folder above it "
                             f"must be searchable by others (default {default_state_dir()})")
    parser.add_argument("--log-level", default=default("LOG_LEVEL", "INFO"))
    parser.add_argument("--sqs", action="store_true",
                        default=str(default("SQS", "")).lower() in ("1", "true", "yes"),
                        help="take commands from the host's SQS queue (serverless control "
                             "plane), with credentials the control plane issues for it")
    group = parser.add_argument_group("simulator driver")
    group.add_argument("--sim-cpu-num", type=int, default=default("SIM_CPU_NUM", sim.cpu_num))
    group.add_argument("--sim-memory-bytes", type=int,
                       default=default("SIM_MEMORY_BYTES", sim.memory_bytes))
    group.add_argument("--sim-latency", type=float, default=default("SIM_LATENCY", 0.0),
                       help="seconds each command takes")
    group.add_argument("--sim-failure-probability", type=float,
                       default=default("SIM_FAILURE_PROBABILITY", 0.0))
    group.add_argument("--sim-seed", type=int, default=default("SIM_SEED"))
    group.add_argument("--sim-fail-command", action="append",
                       default=[c for c in str(default("SIM_FAIL_COMMANDS", "")).split(",") if c],
                       help="make this command always fail (repeatable; env: comma-separated)")
    return parser
