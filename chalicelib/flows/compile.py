"""Compile every chain to ``statemachines/<chain>.asl.json`` and, with ``--infra``, put a
state machine per chain into the CloudFormation template (``make asl``).

    python -m chalicelib.flows.compile --write statemachines/ --infra infra/aerie.json
    python -m chalicelib.flows.compile --check statemachines/ --infra infra/aerie.json
                                                               # exit 1 if a file is stale
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chalicelib.flows import cloudformation
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


def chain_definitions(files: dict[str, str]) -> dict[str, str]:
    """Chain name -> ASL text, from file name -> text."""
    return {name[:-len(ASL_SUFFIX)]: text for name, text in files.items()}


def infra_text(template_path: Path, directory: Path,
               registry: StepRegistry | None = None) -> str:
    """The template with the state machines of every chain as they compile now."""
    template = json.loads(template_path.read_text())
    definitions = chain_definitions(compiled_files(directory, registry))
    return cloudformation.render(cloudformation.with_flows(template, definitions))


def infra_is_stale(template_path: Path, directory: Path,
                   registry: StepRegistry | None = None) -> bool:
    return template_path.read_text() != infra_text(template_path, directory, registry)


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
    parser.add_argument("--infra", type=Path, metavar="TEMPLATE",
                        help="the CloudFormation template that gets a state machine per chain")
    args = parser.parse_args(argv)
    if args.write is not None:
        for name in write(args.write):
            print(args.write / name)
        if args.infra is not None:
            args.infra.write_text(infra_text(args.infra, args.write))
            print(args.infra)
        return 0
    stale = [str(args.check / name) for name in stale_files(args.check)]
    if args.infra is not None and infra_is_stale(args.infra, args.check):
        stale.append(str(args.infra))
    for name in stale:
        print(f"stale: {name} (run `make asl`)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
