"""``aerie up``'s engine process: the operation queues, the flows, host tracking and the
simulated hosts run here, beside the API process that serves HTTP.

One Python process runs Python on one core at a time (the GIL), and under load every
thread that wants it makes the others wait: HTTP requests slowed the flows that hold
SQLite's writer turn, and the flows slowed the requests. Two processes use two cores and
keep each other's threads out of their way; they share the database (SQLite's writer turn
spans processes, see ``db.database.WriterTurn``) and talk over a socket pair
(:mod:`chalicelib.runtime.link`):

- ``job`` (API → engine): a job the API accepted and committed, to queue;
- ``event`` (both ways): an event published in one process, for the other's subscribers
  (an agent's report recorded by the API wakes the flow waiting for it in the engine);
- ``ready`` (engine → API): the engine has queued the jobs a previous run left waiting and
  takes new ones; the API process starts serving only then, so those run first.

The engine dies with the API process (``PR_SET_PDEATHSIG`` on Linux, and the link's end
everywhere): a ``kill -9`` of ``aerie up`` stops both, and the next start resumes the jobs.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib import events, runtime
from chalicelib.runtime.embedded import EmbeddedRuntime
from chalicelib.runtime.link import Link, LinkClosed
from chalicelib.runtime.process import configure_logging, keep_to_cpu, tune_interpreter
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

READY_SECONDS = 600  # resuming a crashed run's jobs rolls back its flows first
STOP_MARGIN_SECONDS = 50  # beyond its jobs' grace, before a stopping engine is killed


class EngineProcess:
    """The API process's handle on its engine: the child process and the link to it."""

    def __init__(self, process: subprocess.Popen, link: Link, stop_seconds: float) -> None:
        self.process = process
        self.link = link
        self.stop_seconds = stop_seconds
        self._unbridge: Callable[[], None] = lambda: None
        self._stopping = False

    @classmethod
    def start(cls, settings: Settings, cpu: int | None = None) -> EngineProcess:
        """Start the engine (its settings come from this process's environment, as
        ``settings`` did; on ``cpu`` only, if given) and return once it takes jobs;
        RuntimeError if it does not start."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid()),
                 "" if cpu is None else str(cpu)], pass_fds=[theirs.fileno()])
        engine = cls(process, Link(ours, "engine"),
                     settings.stop_grace_seconds + STOP_MARGIN_SECONDS)
        ready = threading.Event()
        engine.link.on("ready", lambda _body: ready.set())
        engine._unbridge = connect_events(engine.link)
        engine.link.start()
        deadline = time.monotonic() + READY_SECONDS
        while not ready.wait(0.1):
            if process.poll() is not None:
                why = (f"it exited with code {process.returncode}; its [engine] log lines "
                       f"above say why")
            elif engine.link.closed:
                why = "its link to this process closed"
            elif time.monotonic() > deadline:
                why = (f"it was not ready within {READY_SECONDS} s (resuming the jobs a "
                       f"previous run left, or a database that does not answer)")
            else:
                continue
            engine.stop()
            raise RuntimeError(f"the engine process did not start: {why}")
        return engine

    def submit(self, job_uuid: str, signature: str, level: int) -> None:
        """Hand over a job the API committed. If the engine is gone, the job stays Waiting
        in the jobs table, and the next start runs it; the caller's 202 stands."""
        try:
            self.link.send("job", [job_uuid, signature, level])
        except LinkClosed:
            log.warning("the engine process is gone: job %s stays Waiting and runs when "
                        "aerie up starts again", job_uuid)

    def when_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` if the engine ends without being asked to (it crashed)."""
        self.link.when_closed(lambda: None if self._stopping else callback())

    def stop(self) -> int:
        """Stop the engine (it lets its running jobs end) and return its exit code."""
        self._stopping = True
        self._unbridge()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=self.stop_seconds)
        except subprocess.TimeoutExpired:
            log.warning("the engine process did not stop within %g s; killing it",
                        self.stop_seconds)
            self.process.kill()
            code = self.process.wait()
        self.link.close()
        return code


def connect_events(link: Link) -> Callable[[], None]:
    """Events published in this process reach the other's subscribers, and theirs ours:
    each process tells the other which events its subscribers want (``wants``), and only
    those cross. Returns what disconnects ours (theirs stop with the link)."""
    peer_wants: list[events.Names] = [None]  # everything, until the other process says

    def pass_on(name: str, payload: dict[str, Any]) -> None:
        wants = peer_wants[0]
        if wants is None or name in wants:
            with contextlib.suppress(LinkClosed):  # the other process is gone: this one ends
                link.send("event", [name, payload])

    def tell(names: events.Names) -> None:
        with contextlib.suppress(LinkClosed):
            link.send("wants", None if names is None else sorted(names))

    def heard(names: list[str] | None) -> None:
        peer_wants[0] = None if names is None else frozenset(names)

    link.on("event", lambda body: events.deliver(*body))
    link.on("wants", heard)
    unwatch = events.watch_wanted(tell)
    unbridge = events.bridge(pass_on)
    return lambda: (unbridge(), unwatch())


def _die_with(parent_pid: int) -> None:
    """Have the kernel kill this process when the API process dies (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above
        os._exit(1)


def main(argv: list[str]) -> int:
    fd, parent_pid, cpu = int(argv[0]), int(argv[1]), argv[2]
    configure_logging("engine")
    _die_with(parent_pid)
    if cpu:
        keep_to_cpu(int(cpu))  # before any thread starts: they inherit it
    settings = Settings.from_env()

    link = Link(socket.socket(fileno=fd), "api")
    embedded = EmbeddedRuntime(settings)
    runtime.install(embedded)
    stopping = threading.Event()
    # Ctrl-C reaches both processes: the API process stops this one once it stopped serving.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    link.on("job", lambda body: embedded.jobs.submit(*body))
    link.when_closed(stopping.set)
    unbridge = connect_events(link)
    embedded.start_background()
    interrupted, requeued = embedded.resume_jobs()
    if interrupted or requeued:
        log.info("after restart: %d interrupted jobs failed and rolled back, %d waiting jobs "
                 "queued again", interrupted, requeued)
    link.start()  # after the resumed jobs: they keep their place ahead of new ones
    tune_interpreter()
    link.send("ready", {"interrupted": interrupted, "requeued": requeued})
    while not stopping.wait(1):
        pass
    unbridge()
    embedded.close()
    link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
