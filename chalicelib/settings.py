"""Process settings, read once from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class Settings:
    db_url: str
    listen: str
    var_dir: Path
    runtime: str  # "embedded" or "aws"
    admin_password: str | None
    job_workers: int
    jobs_queue_url: str | None
    http_threads: int = 16
    public_url: str | None = None  # how hosts reach the API, if not at the listen address
    agent_queue_prefix: str = "aerie-host-"  # serverless: one SQS queue per host
    # Serverless: the role whose credentials, narrowed to one host's queue, agents receive.
    agent_role_arn: str | None = None
    agent_credentials_seconds: int = 3600
    # Serverless flows: state machine ARN = prefix + chain name; how long one consumer
    # Lambda waits for a flow before handing its turn to the next delivery.
    flow_state_machine_prefix: str = ""
    flow_wait_seconds: float = 45.0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # aerie up: "auto" runs its engine and API processes each on a CPU of its own (when
    # there are two or more); "off" leaves them to the scheduler.
    cpu_affinity: str = "auto"
    # aerie up: how long a stop lets running jobs go on (a flow still waiting for a host
    # agent after that is left to the next start, which rolls it back).
    stop_grace_seconds: float = 10.0

    @property
    def redacted_db_url(self) -> str:
        """The database URL without its password, fit for a log."""
        from sqlalchemy.engine import make_url

        return make_url(self.db_url).render_as_string(hide_password=True)

    @property
    def agent_url(self) -> str:
        """The URL agents are told to poll."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert_file else "http"
        return f"{scheme}://{self.listen}"

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("AERIE_VAR_DIR", "var")).resolve()
        listen = env.get("AERIE_LISTEN", DEFAULT_LISTEN)
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"AERIE_LISTEN must be host:port, got {listen!r}")
        return cls(
            db_url=env.get("AERIE_DB_URL") or f"sqlite:///{var_dir / 'aerie.db'}",
            listen=listen,
            var_dir=var_dir,
            runtime=env.get("AERIE_RUNTIME", "embedded"),
            admin_password=env.get("AERIE_ADMIN_PASSWORD") or None,
            job_workers=int(env.get("AERIE_JOB_WORKERS", "16")),
            jobs_queue_url=env.get("AERIE_JOBS_QUEUE_URL"),
            http_threads=int(env.get("AERIE_HTTP_THREADS", "16")),
            public_url=env.get("AERIE_PUBLIC_URL") or None,
            agent_queue_prefix=env.get("AERIE_AGENT_QUEUE_PREFIX", "aerie-host-"),
            agent_role_arn=env.get("AERIE_AGENT_ROLE_ARN") or None,
            agent_credentials_seconds=int(env.get("AERIE_AGENT_CREDENTIALS_SECONDS", "3600")),
            flow_state_machine_prefix=env.get("AERIE_FLOW_STATE_MACHINE_PREFIX", ""),
            flow_wait_seconds=float(env.get("AERIE_FLOW_WAIT_SECONDS", "45")),
            tls_cert_file=env.get("AERIE_TLS_CERT") or None,
            tls_key_file=env.get("AERIE_TLS_KEY") or None,
            cpu_affinity=_choice(env, "AERIE_CPU_AFFINITY", ("auto", "off")),
            stop_grace_seconds=_seconds(env, "AERIE_STOP_GRACE_SECONDS", 10.0),
        )


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ValueError(f"{name} must be seconds from 0 to 3600, got {text!r}")
    return value
