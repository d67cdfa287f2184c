"""The serverless cost `bench/create_vms.py` prints is computed from the compiled create-vm
state machine: a change to the chain changes the figure, never leaves it stale."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_create_vms",
                                                  ROOT / "bench" / "create_vms.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _bench()


def _asl() -> dict:
    return json.loads((ROOT / "statemachines" / "create-vm.asl.json").read_text())


def _chain_steps():
    """The create-vm chain as the runtime resolves it (extension points filled)."""
    from chalicelib.flows.chains import ChainLibrary
    from chalicelib.flows.steps import STEPS, load_step_modules

    load_step_modules()
    return ChainLibrary.load().resolve("create-vm", STEPS).steps


def test_the_success_path_enters_each_step_of_the_chain_then_succeeds():
    asl = _asl()
    path = bench.success_path(asl)
    steps = _chain_steps()
    assert path.states == (*(f"Run {s.name}" for s in steps), path.states[-1])
    assert asl["States"][path.states[-1]]["Type"] == "Succeed"
    assert path.transitions == len(steps) + 1
    assert path.lambda_tasks == len(steps)
    assert path.agent_tasks == sum(s.waits_for_agent for s in steps)


def test_cost_per_thousand_creations_is_the_arithmetic_of_the_path_and_prices():
    path = bench.load_success_path()
    cost = bench.serverless_cost(path, seconds_per_step=0.05)
    assert cost.step_functions == pytest.approx(path.transitions * 0.025)
    assert cost.lambda_requests == pytest.approx(path.lambda_tasks * 1000 * 0.20 / 1e6)
    assert cost.lambda_duration == pytest.approx(
        path.lambda_tasks * 1000 * 0.05 * 1.0 * 0.0000166667)
    assert cost.sqs_operations == pytest.approx(3 * 1000 * 0.50 / 1e6)
    assert cost.sqs_agents == pytest.approx(path.agent_tasks * 3 * 1000 * 0.50 / 1e6)
    assert cost.total == pytest.approx(cost.step_functions + cost.lambda_requests
                                       + cost.lambda_duration + cost.sqs_operations
                                       + cost.sqs_agents)


def test_a_walk_follows_choice_defaults_and_refuses_loops_and_fail_ends():
    choice = {"StartAt": "a", "States": {
        "a": {"Type": "Choice", "Choices": [], "Default": "b"},
        "b": {"Type": "Pass", "End": True}}}
    assert bench.success_path(choice).states == ("a", "b")
    with pytest.raises(ValueError, match="loops"):
        bench.success_path({"StartAt": "a", "States": {"a": {"Type": "Pass", "Next": "a"}}})
    with pytest.raises(ValueError, match="Fail"):
        bench.success_path({"StartAt": "a", "States": {"a": {"Type": "Fail"}}})
