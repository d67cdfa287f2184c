"""``aerie`` entry point: ``aerie up`` and ``aerie db upgrade`` run the control plane; every
other command is the HTTP client (cli/commands.py), which never imports the control plane."""
from __future__ import annotations

import argparse
import sys

SERVER_USAGE = """aerie up                      start the embedded control plane (see README)
aerie db upgrade              migrate the database named by AERIE_DB_URL to the newest schema
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("up", "db"):
        return _server(argv)
    from cli.commands import Cli

    return Cli().run(argv)


def _server(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aerie", usage=SERVER_USAGE)
    parser.add_argument("command", nargs="?")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    from chalicelib.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a setting's value: the message names it
        print(f"aerie: {exc}", file=sys.stderr)
        return 2
    if args.command == "up":
        from chalicelib.runtime.server import serve

        return serve(settings)
    if args.command == "db" and args.rest == ["upgrade"]:
        from chalicelib.db.database import Database
        from chalicelib.runtime.bootstrap import prepare_database

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        generated = prepare_database(Database(settings.db_url), settings.admin_password)
        print(f"database {settings.redacted_db_url} is at the newest schema")
        if generated:
            print(f"admin password (generated, shown only now): {generated}")
        return 0
    parser.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
