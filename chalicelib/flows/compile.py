"""Compile every chain to ``statemachines/<chain>.asl.json`` (``make asl``).

    python -m chalicelib.flows.compile --write statemachines/
    python -m chalicelib.flows.compile --check statemachines/   # exit 1 if a file is stale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chalicelib.flows import steps as step_registry
from chalicelib.flows.asl import compile_chain, render
from chalicelib.flows.chains import ChainLibrary
from chalicelib.flows.steps import StepRegistry, load_step_modules

ASL_SUFFIX = ".asl.json"


def compiled_files(directory: Path, registry: StepRegistry | None = None) -> dict[str, str]:
    """File name -> text for every chain in ``directory/chains``, extension points filled
    from the registry (after importing every step module)."""
    if registry is None:
        load_step_modules()
        registry = step_registry.STEPS
    library = ChainLibrary.load(directory / "chains")
    return {f"{name}{ASL_SUFFIX}": render(compile_chain(library.resolve(name, registry)))
            for name in library.names()}


def stale_files(directory: Path, registry: StepRegistry | None = None) -> list[str]:
    """Files that differ from what the chains compile to, are missing, or are left over."""
    wanted = compiled_files(directory, registry)
    present = {path.name for path in directory.glob(f"*{ASL_SUFFIX}")}
    stale = [name for name, text in wanted.items()
             if name not in present or (directory / name).read_text() != text]
    return sorted(stale + [name for name in present if name not in wanted])


def write(directory: Path, registry: StepRegistry | None = None) -> list[str]:
    wanted = compiled_files(directory, registry)
    for name, text in wanted.items():
        (directory / name).write_text(text)
    for path in directory.glob(f"*{ASL_SUFFIX}"):
        if path.name not in wanted:
            path.unlink()
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="DIR")
    mode.add_argument("--check", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    if args.write is not None:
        for name in write(args.write):
            print(args.write / name)
        return 0
    stale = stale_files(args.check)
    for name in stale:
        print(f"stale: {args.check / name} (run `make asl`)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
