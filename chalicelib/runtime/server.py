"""``aerie up``: the embedded control plane on a production-grade threaded HTTP server.

This process (the API process) serves HTTP; the jobs it accepts run in the engine process
it starts (:mod:`chalicelib.runtime.engine_process` says why there are two)."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

from cheroot import wsgi

from chalicelib import runtime
from chalicelib.db.database import Database
from chalicelib.runtime.bootstrap import prepare_database
from chalicelib.runtime.embedded import ApiRuntime
from chalicelib.runtime.engine_process import EngineProcess
from chalicelib.runtime.instance_lock import AlreadyRunning, InstanceLock
from chalicelib.runtime.process import (
    CpuPlan,
    configure_logging,
    keep_to_cpu,
    plan_cpus,
    tune_interpreter,
)
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

def make_server(settings: Settings, wsgi_app) -> wsgi.Server:
    server = wsgi.Server(
        (settings.listen_host, settings.listen_port), wsgi_app,
        numthreads=settings.http_threads, max=settings.http_threads,
        request_queue_size=1024, timeout=30,
        server_name="aerie",
    )
    # cheroot closes idle keep-alive connections beyond this many (default 10).
    server.keep_alive_conn_limit = 4096
    tls = settings.tls_cert_file, settings.tls_key_file
    if all(tls):
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(*tls)
    return server


def banner(settings: Settings, generated_password: str | None, scheme: str) -> str:
    url = f"{scheme}://{settings.listen}"
    lines = [
        f"Aerie control plane (embedded) listening on {url}",
        f"  database:  {settings.redacted_db_url}",
        f"  API:       {url}/v1/openapi.json",
    ]
    if generated_password:
        lines.append(f"  admin password (generated, shown only now): {generated_password}")
    else:
        lines.append("  admin password: as set (AERIE_ADMIN_PASSWORD or an earlier start)")
    password = generated_password or "<admin password>"
    lines += [
        "  log in:    curl -X PUT " + url + "/v1/accounts/login -H 'Content-Type: application/json'"
        + f" -d '{{\"accountName\": \"admin\", \"password\": \"{password}\"}}'",
        "  then send: Authorization: Bearer <token from the reply>",
    ]
    return "\n".join(lines)


def serve(settings: Settings) -> int:
    configure_logging("api")
    cpus = plan_cpus(settings.cpu_affinity)
    if cpus is not None:  # before any thread starts: they inherit it (the engine sets its own)
        keep_to_cpu(cpus.api)
        log.info("the API process runs on CPU %d, the engine process on CPU %d", cpus.api,
                 cpus.engine)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    try:
        instance = InstanceLock.take(settings.db_url)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    try:
        return _serve(settings, cpus)
    finally:
        instance.release()


def _serve(settings: Settings, cpus: CpuPlan | None) -> int:
    database = Database(settings.db_url)
    try:
        generated = prepare_database(database, settings.admin_password)
    finally:
        database.dispose()

    import app as chalice_app  # the very module Lambda loads; requests find the runtime later

    server = make_server(settings, ChaliceWsgiApp(chalice_app.app))
    try:
        server.prepare()  # listens (requests wait until serve()): a taken address fails here
    except OSError as exc:
        log.error("cannot listen on %s: %s", settings.listen, exc.strerror or exc)
        return 1
    try:
        engine = EngineProcess.start(settings, cpus.engine if cpus else None)
    except RuntimeError as exc:
        log.error("%s", exc)
        server.stop()
        return 1
    api = ApiRuntime(settings, engine)
    runtime.install(api)

    # Whatever asks to stop (a signal, the engine's end) only sets this; the stopper thread
    # does the stopping, once the server listens (a signal during start-up is not lost). The
    # engine drains first, while this process still serves: agents' reports still reach the
    # flows that wait for them, and a job accepted meanwhile stays Waiting for the next
    # start. Then the server answers the requests it has in hand, and stops.
    stopping = threading.Event()
    engine_code: list[int] = []

    def stop() -> None:
        stopping.wait()
        engine_code.append(engine.stop())
        server.stop()

    stopper = threading.Thread(target=stop, name="aerie-stop", daemon=True)

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()

    def on_engine_gone() -> None:
        try:
            code = engine.process.wait(timeout=5)
            log.error("the engine process ended (exit code %s): stopping", code)
        except subprocess.TimeoutExpired:
            log.error("the link to the engine process broke: stopping")
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopper.start()
    engine.when_gone(on_engine_gone)
    tune_interpreter()
    print(banner(settings, generated, "https" if server.ssl_adapter else "http"), flush=True)
    try:
        server.serve()
    finally:
        stopping.set()
        stopper.join()
        api.close()
    return 0 if engine_code == [0] else 1


if __name__ == "__main__":
    sys.exit(serve(Settings.from_env()))
