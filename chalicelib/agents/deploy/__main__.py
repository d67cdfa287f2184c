"""``python -m chalicelib.agents.deploy VAR_DIR``: build (or find) the agent's wheel bundle
under VAR_DIR and print its directory, for running the playbook by hand
(``-e aerie_agent_wheels=DIR``)."""
from __future__ import annotations

import sys
from pathlib import Path

from chalicelib.agents.deploy.wheels import agent_wheels


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chalicelib.agents.deploy VAR_DIR", file=sys.stderr)
        return 2
    print(agent_wheels(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
