"""The ASL compiler: the checked-in state machines are current, and have the shape the
runtime relies on (what they do is tested against moto in test_flow_conformance.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chalicelib.flows.asl import (
    FLOW_FAILED,
    FLOW_SUCCEEDED,
    LAMBDA_INVOKE,
    LAMBDA_INVOKE_WAITING,
    TRANSIENT_LAMBDA_ERRORS,
    compile_chain,
    failed_state,
    rollback_state,
    run_state,
)
from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.compile import main, stale_files

STATEMACHINES = Path(__file__).resolve().parents[2] / "statemachines"
CHAIN = Chain("t", (ChainStep("vm.a"), ChainStep("vm.wait", 60), ChainStep("vm.c")))


def test_the_checked_in_state_machines_are_what_the_chains_compile_to():
    assert stale_files(STATEMACHINES) == [], "statemachines/ is stale: run `make asl`"


def test_a_changed_chain_makes_its_state_machine_stale(tmp_path, capsys):
    shutil.copytree(STATEMACHINES, tmp_path, dirs_exist_ok=True)
    chain_file = tmp_path / "chains" / "stop-vm.json"
    chain = json.loads(chain_file.read_text())
    chain["steps"].insert(0, "vm.check-something")
    chain_file.write_text(json.dumps(chain))
    (tmp_path / "gone.asl.json").write_text("{}")
    assert main(["--check", str(tmp_path)]) == 1
    assert "stop-vm.asl.json" in capsys.readouterr().err
    assert stale_files(tmp_path) == ["gone.asl.json", "stop-vm.asl.json"]
    assert main(["--write", str(tmp_path)]) == 0
    assert stale_files(tmp_path) == []
    assert not (tmp_path / "gone.asl.json").exists()


def test_each_step_is_one_task_with_a_catch_into_the_reverse_rollbacks():
    states = compile_chain(CHAIN, "arn:fn")["States"]
    assert compile_chain(CHAIN, "arn:fn")["StartAt"] == run_state("vm.a")
    tasks = [name for name, state in states.items() if state["Type"] == "Task"]
    assert len(tasks) == 2 * len(CHAIN.steps)  # a run and a rollback per step
    assert [states[run_state(n)]["Next"] for n in ("vm.a", "vm.wait", "vm.c")] == [
        run_state("vm.wait"), run_state("vm.c"), FLOW_SUCCEEDED]
    for name in ("vm.a", "vm.wait", "vm.c"):
        catch = states[run_state(name)]["Catch"]
        assert catch == [{"ErrorEquals": ["States.ALL"], "Next": failed_state(name),
                          "ResultPath": "$.failure"}]
        assert states[failed_state(name)]["Next"] == rollback_state(name)
    # a rollback goes on to the one before it whether it succeeded or not
    for name, before in (("vm.c", "vm.wait"), ("vm.wait", "vm.a"), ("vm.a", None)):
        rollback = states[rollback_state(name)]
        after = rollback_state(before) if before else FLOW_FAILED
        assert rollback["Next"] == rollback["Catch"][0]["Next"] == after
        assert rollback["Parameters"]["Payload"]["action"] == "rollback"
    assert states[FLOW_FAILED]["Type"] == "Fail"
    assert states[FLOW_FAILED]["CausePath"] == "States.JsonToString($.failure)"


def test_only_transient_lambda_errors_are_retried():
    for state in compile_chain(CHAIN, "arn:fn")["States"].values():
        if state["Type"] == "Task":
            assert [r["ErrorEquals"] for r in state["Retry"]] == [TRANSIENT_LAMBDA_ERRORS]
            assert state["Parameters"]["FunctionName"] == "arn:fn"


@pytest.mark.parametrize("name", ["vm.a", "vm.c"])
def test_a_plain_step_invokes_the_step_lambda_and_takes_its_result_as_the_context(name):
    task = compile_chain(CHAIN, "arn:fn")["States"][run_state(name)]
    assert task["Resource"] == LAMBDA_INVOKE
    assert task["Parameters"]["Payload"] == {"action": "run", "context.$": "$.context",
                                             "step": name}
    assert task["ResultSelector"] == {"context.$": "$.Payload"}


def test_an_agent_step_waits_for_its_task_token_with_a_timeout():
    task = compile_chain(CHAIN, "arn:fn")["States"][run_state("vm.wait")]
    assert task["Resource"] == LAMBDA_INVOKE_WAITING
    assert task["Parameters"]["Payload"]["taskToken.$"] == "$$.Task.Token"
    assert task["TimeoutSeconds"] == 60
    assert task["ResultPath"] == "$.context.agentResults.vm_wait"
