"""Fixtures every test shares: a migrated database on SQLite and on MySQL, and a control
plane (the embedded runtime behind the real Chalice app) with an HTTP client for it."""
from __future__ import annotations

import os
import shutil

import httpx
import pytest
from sqlalchemy import text

from chalicelib import runtime
from chalicelib.db.base import Base
from chalicelib.db.database import Database
from chalicelib.runtime.bootstrap import prepare_database
from chalicelib.runtime.embedded import EmbeddedRuntime
from chalicelib.runtime.wsgi import ChaliceWsgiApp
from chalicelib.settings import Settings
from tests.support import mariadb
from tests.support.api import ADMIN_PASSWORD, ApiClient

os.environ.setdefault("AWS_XRAY_SDK_ENABLED", "false")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(scope="session")
def mysql_available() -> None:
    problem = mariadb.ensure_mariadb()
    if problem:
        if mariadb.IN_CI:
            pytest.fail(f"CI=true needs MariaDB on 127.0.0.1:3306: {problem}")
        pytest.skip(f"MySQL tests skipped: {problem}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    db = Database(f"sqlite:///{path}")
    prepare_database(db, ADMIN_PASSWORD)
    db.dispose()
    return str(path)


@pytest.fixture(scope="session")
def mysql_database(mysql_available) -> str:
    name = f"aerie_test_{os.getpid()}"
    mariadb.recreate_database(name)
    db = Database(mariadb.server_url(name))
    prepare_database(db, ADMIN_PASSWORD)
    db.dispose()
    return mariadb.server_url(name)


def _wipe(db: Database) -> None:
    with db.session() as session:
        if db.engine.dialect.name == "mysql":
            session.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
        if db.engine.dialect.name == "mysql":
            session.execute(text("SET FOREIGN_KEY_CHECKS=1"))


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A freshly prepared database: schema, configs and the admin account, nothing else."""
    if request.param == "sqlite":
        path = tmp_path / "aerie.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("mysql_database")
    db = Database(url)
    _wipe(db)
    prepare_database(db, ADMIN_PASSWORD)
    db.dispose()
    return url


@pytest.fixture
def db(db_url):
    """The prepared database, for tests of domain code below the API."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def control_plane(db_url, tmp_path):
    settings = Settings.from_env({"AERIE_DB_URL": db_url, "AERIE_VAR_DIR": str(tmp_path),
                                  "AERIE_JOB_WORKERS": "4"})
    embedded = EmbeddedRuntime(settings)
    runtime.install(embedded)
    yield embedded
    runtime.install(None)
    embedded.close()


@pytest.fixture
def wsgi_app(control_plane):
    import app as chalice_app

    return ChaliceWsgiApp(chalice_app.app)


@pytest.fixture
def api(wsgi_app) -> ApiClient:
    """A client logged in as admin."""
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi_app),
                      base_url="http://aerie") as http:
        client = ApiClient(http)
        client.login()
        yield client


@pytest.fixture
def anonymous(wsgi_app) -> ApiClient:
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi_app),
                      base_url="http://aerie") as http:
        yield ApiClient(http)
