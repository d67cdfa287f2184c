"""``aerie up``: the embedded control plane on a production-grade threaded HTTP server."""
from __future__ import annotations

import gc
import logging
import signal
import sys
import threading

from cheroot import wsgi

from chalicelib import runtime
from chalicelib.runtime.bootstrap import prepare_database
from chalicelib.runtime.embedded import EmbeddedRuntime
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from chalicelib.settings import Settings

log = logging.getLogger("aerie")

SWITCH_INTERVAL = 0.0005  # seconds a thread may keep the GIL while others wait for it


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedRuntime(settings)
    generated = prepare_database(embedded.db, settings.admin_password)
    runtime.install(embedded)
    embedded.start_background()
    interrupted, requeued = embedded.resume_jobs()
    if interrupted or requeued:
        log.info("after restart: %d interrupted jobs failed and rolled back, %d waiting jobs "
                 "queued again", interrupted, requeued)

    import app as chalice_app  # the very module Lambda loads

    server = make_server(settings, ChaliceWsgiApp(chalice_app.app))
    def _stop(signum, _frame):
        log.info("signal %d: stopping", signum)
        # stop() joins the worker threads: it must not run on the thread serving the loop.
        threading.Thread(target=server.stop, name="aerie-stop").start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Everything loaded so far lives as long as the process: keep it out of GC passes.
    gc.collect()
    gc.freeze()
    # Transactions take turns on one lock (SQLite) and let go of the GIL at each statement;
    # at the default 5 ms switch interval another thread (an HTTP request being parsed or
    # rendered) keeps the GIL that long while the lock holder, and everyone queued behind
    # it, waits. Measured with bench/create_vms.py: 300 VMs in 30 s instead of 43 s.
    sys.setswitchinterval(SWITCH_INTERVAL)
    server.prepare()
    print(banner(settings, generated, "https" if server.ssl_adapter else "http"), flush=True)
    try:
        server.serve()
    finally:
        embedded.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Settings.from_env()))
