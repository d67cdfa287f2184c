"""``aerie-agent`` entry point. The agent itself is not built yet; this says so plainly."""
import sys


def main() -> int:
    print("aerie-agent: the host agent is not implemented in this version of Aerie",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
