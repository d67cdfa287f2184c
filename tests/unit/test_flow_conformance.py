"""The seam between the two runtimes: for every chain, with a failure injected at every step
in turn (and at every rollback), the local runner and the compiled state machine executed
by moto run the same steps and rollbacks in the same order and end the same way.

moto runs the ASL; its Lambda calls reach the real step Lambda of app.py in-process, whose
steps are recording fakes (tests/unit/test_flow_fakes.py); agent waits are resumed by a
fake agent through ``send_task_success``/``send_task_failure``, as a report would.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import runtime
from chalicelib.flows import steps as step_registry
from chalicelib.flows.asl import compile_chain, render
from chalicelib.flows.chains import CHAINS_DIR, Chain, ChainLibrary
from chalicelib.flows.local import LocalFlowRunner
from chalicelib.flows.outcome import AGENT_COMMAND_FAILED, AGENT_TIMED_OUT, STEP_FAILED
from chalicelib.flows.stepfunctions import StepFunctionsFlowRunner
from chalicelib.flows.steps import StepRegistry
from tests.support.stepfunctions import (
    EXECUTING,
    MACHINE_PREFIX,
    REGION,
    create_state_machines,
    run_step_lambda_in_process,
)
from tests.unit.test_flow_fakes import FakeAgents, Journal, fake_env, recording_registry

# A chain of the tests' own, to see an agent wait time out (a 1 s timeout).
TIMEOUT_CHAIN = {"name": "agent-timeout", "steps": [
    "test.before-wait", {"name": "test.wait", "waitsForAgent": True, "timeoutSeconds": 1},
    "test.after-wait"]}


def chain_library() -> ChainLibrary:
    raw = {path.stem: json.loads(path.read_text()) for path in CHAINS_DIR.glob("*.json")}
    return ChainLibrary({**raw, TIMEOUT_CHAIN["name"]: TIMEOUT_CHAIN})


@dataclass(frozen=True)
class Case:
    chain: str
    fail: frozenset[tuple[str, str]] = frozenset()
    agent_fails: frozenset[str] = frozenset()
    agent_silent: frozenset[str] = frozenset()


def cases() -> list[Any]:
    library = chain_library()
    registry = recording_registry(Journal(), library)
    found = []
    for name in library.names():
        chain = library.resolve(name, registry)
        last = chain.steps[-1].name
        found.append(pytest.param(Case(name), id=f"{name}:succeeds"))
        for chain_step in chain.steps:
            if name == TIMEOUT_CHAIN["name"] and chain_step.name == "test.wait":
                found.append(pytest.param(Case(name, agent_silent=frozenset({"test.wait"})),
                                          id=f"{name}:{chain_step.name}-times-out"))
            elif chain_step.waits_for_agent:
                found.append(pytest.param(Case(name, agent_fails=frozenset({chain_step.name})),
                                          id=f"{name}:{chain_step.name}-agent-fails"))
                found.append(pytest.param(Case(name, fail=frozenset({("send", chain_step.name)})),
                                          id=f"{name}:{chain_step.name}-cannot-send"))
            else:
                found.append(pytest.param(Case(name, fail=frozenset({("run", chain_step.name)})),
                                          id=f"{name}:{chain_step.name}-fails"))
            last_fails = ("send", last) if chain.steps[-1].waits_for_agent else ("run", last)
            found.append(pytest.param(
                Case(name, fail=frozenset({last_fails, ("rollback", chain_step.name)})),
                id=f"{name}:{last}-fails-and-rollback-of-{chain_step.name}-fails"))
    return found


@dataclass
class Harness:
    journal: Journal
    registry: StepRegistry
    chains: dict[str, Chain]
    stepfunctions: Any
    remote: StepFunctionsFlowRunner


@pytest.fixture(scope="module")
def harness():
    import app as app_module

    journal = Journal()
    library = chain_library()
    registry = recording_registry(journal, library)
    with mock_aws(config=EXECUTING), pytest.MonkeyPatch.context() as mp:
        stepfunctions = boto3.client("stepfunctions", region_name=REGION)
        agents = FakeAgents(journal, stepfunctions)
        run_step_lambda_in_process(mp, app_module)
        mp.setattr(step_registry, "STEPS", registry)
        mp.setattr(app_module, "step_env", lambda _runtime: fake_env(agents))
        mp.setattr(runtime, "_current", SimpleNamespace())
        chains = {name: library.resolve(name, registry) for name in library.names()}
        create_state_machines(stepfunctions, {name: render(compile_chain(chain))
                                              for name, chain in chains.items()})
        yield Harness(journal, registry, chains, stepfunctions,
                      StepFunctionsFlowRunner(stepfunctions, MACHINE_PREFIX, poll_seconds=0.01))


@pytest.mark.parametrize("case", cases())
def test_local_runner_and_state_machine_agree(harness: Harness, case: Case):
    journal, chain = harness.journal, harness.chains[case.chain]
    context = {"vmUuid": "vm-1"}

    journal.reset(case.fail, case.agent_fails, case.agent_silent)
    local_agents = FakeAgents(journal)
    local = LocalFlowRunner(fake_env(local_agents), local_agents, harness.registry) \
        .run(chain, context)
    local_journal = list(journal.entries)

    journal.reset(case.fail, case.agent_fails, case.agent_silent)
    remote = harness.remote.run(case.chain, uuid.uuid4().hex, context,
                                deadline=time.monotonic() + 30)
    remote_journal = list(journal.entries)

    assert remote is not None, "the execution did not end within 30 s"
    assert remote_journal == local_journal
    assert remote == local

    ran = [chain_step.name for chain_step in chain.steps][:len(local.ran)]
    assert list(local.ran) == ran
    if not (case.fail or case.agent_fails or case.agent_silent):
        assert local.succeeded
        assert local.context.get("ran", []) == [
                s.name for s in chain.steps if not s.waits_for_agent]
        assert "dropped" not in local.context
        return
    assert not local.succeeded
    assert [record.step for record in local.rollbacks] == list(reversed(local.ran))
    failed_rollbacks = {("rollback", r.step) for r in local.rollbacks if not r.succeeded}
    assert failed_rollbacks == {f for f in case.fail if f[0] == "rollback"}
    expected_error = AGENT_TIMED_OUT if case.agent_silent else \
        AGENT_COMMAND_FAILED if case.agent_fails else STEP_FAILED
    assert local.failure.error == expected_error
