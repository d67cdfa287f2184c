"""A MariaDB server for the MySQL half of the suite: found, started, or (under CI) installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pymysql

HOST, PORT, USER = "127.0.0.1", 3306, "root"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable() -> str | None:
    try:
        pymysql.connect(host=HOST, port=PORT, user=USER, password="", connect_timeout=2).close()
        return None
    except pymysql.MySQLError as exc:
        return str(exc)


def _install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "mariadb-server"], check=True, env=env,
                   timeout=600)


def _start() -> None:
    os.makedirs("/run/mysqld", exist_ok=True)
    shutil.chown("/run/mysqld", "mysql", "mysql")
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    "/usr/sbin/mariadbd"], check=False, timeout=30)


def ensure_mariadb() -> str | None:
    """None when MariaDB answers on 127.0.0.1:3306, else why it does not."""
    problem = _reachable()
    if problem is None:
        return None
    try:
        if not os.path.exists("/usr/sbin/mariadbd"):
            if not IN_CI:
                return f"MariaDB is not installed ({problem}); CI installs it, here it is skipped"
            _install()
        _start()
    except (OSError, subprocess.SubprocessError, LookupError) as exc:
        return f"could not start MariaDB: {exc}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        problem = _reachable()
        if problem is None:
            return None
        time.sleep(0.5)
    return f"MariaDB did not answer on {HOST}:{PORT}: {problem}"


def server_url(database: str) -> str:
    return f"mysql+pymysql://{USER}@{HOST}:{PORT}/{database}?charset=utf8mb4"


def recreate_database(name: str) -> None:
    connection = pymysql.connect(host=HOST, port=PORT, user=USER, password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                           "COLLATE utf8mb4_bin")
    finally:
        connection.close()
