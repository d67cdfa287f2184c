"""The session file: only its owner can read the token; logout forgets it."""
from __future__ import annotations

import stat
import subprocess
import sys

from cli.session import DocumentCache, Session, SessionStore


def test_the_session_file_is_0600_in_a_0700_directory(tmp_path):
    home = tmp_path / "aerie"
    store = SessionStore(home)
    store.save(Session(url="http://127.0.0.1:8080", token="secret", uuid="s1", account="admin"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == Session("http://127.0.0.1:8080", "secret", "s1", "admin")
    assert store.delete() and store.load() is None and not store.delete()


def test_a_loose_existing_directory_is_tightened_and_a_session_rewritten_stays_0600(tmp_path):
    home = tmp_path / "aerie"
    home.mkdir(mode=0o755)
    (home / "session.json").write_text("{}")
    (home / "session.json").chmod(0o644)
    store = SessionStore(home)
    store.save(Session(url="u", token="t"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_aerie_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("AERIE_HOME", str(tmp_path / "h"))
    assert SessionStore().path == tmp_path / "h" / "session.json"


def test_a_broken_session_file_is_no_session(tmp_path):
    (tmp_path / "session.json").write_text("not json")
    assert SessionStore(tmp_path).load() is None


def test_documents_are_cached_per_server(tmp_path):
    cache = DocumentCache(tmp_path)
    cache.save("http://a:1", {"paths": {"a": 1}})
    cache.save("http://b:1/", {"paths": {"b": 1}})
    assert cache.load("http://a:1") == {"paths": {"a": 1}}
    assert cache.load("http://b:1") == {"paths": {"b": 1}}
    assert cache.load("http://c:1") is None
    assert cache.load("http://a:1", max_age=-1) is None  # too old


def test_the_client_does_not_import_the_control_plane():
    probe = ("import sys, cli.main, cli.commands, cli.shell, cli.completion; "
             "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('chalicelib', 'app', 'sqlalchemy', 'chalice')) or 0)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
