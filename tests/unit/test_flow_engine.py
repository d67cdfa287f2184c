"""The flow engine's semantics, on the local runner: rollback order, failing rollbacks,
re-running rollbacks, agent waits, the context and what a job shows."""
from __future__ import annotations

from contextlib import contextmanager

from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.local import LocalFlowRunner
from chalicelib.flows.outcome import (
    AGENT_COMMAND_FAILED,
    AGENT_TIMED_OUT,
    STEP_FAILED,
    FlowFailed,
    FlowProgress,
    RollbackRecord,
)
from chalicelib.flows.steps import FlowContext, StepEnv, StepRegistry, agent_result, step
from tests.unit.test_flow_fakes import (
    FakeAgents,
    Journal,
    fake_env,
    recording_agent_step,
    recording_step,
)

CHAIN = Chain("test", (ChainStep("a"), ChainStep("b"), ChainStep("w", 30), ChainStep("c")))


def runner_for(journal: Journal, registry: StepRegistry | None = None) -> LocalFlowRunner:
    if registry is None:
        registry = StepRegistry()
        for name in "abc":
            recording_step(journal, name, registry)
        recording_agent_step(journal, "w", registry)
    agents = FakeAgents(journal)
    return LocalFlowRunner(fake_env(agents), agents, registry)


def test_a_flow_runs_its_steps_in_order_and_passes_the_context_on():
    journal = Journal()
    outcome = runner_for(journal).run(CHAIN, {"vmUuid": "vm-1"})
    assert outcome.succeeded and outcome.ran == ("a", "b", "w", "c")
    assert journal.entries == [("run", "a"), ("run", "b"), ("run", "w"), ("send", "w"),
                               ("run", "c")]
    assert outcome.context["ran"] == ["a", "b", "c"]
    assert outcome.context["vmUuid"] == "vm-1"
    # the agent saw the context as it was, and its report is in the context
    assert agent_result(outcome.context, "w") == {"reportedBy": "w", "sawRan": ["a", "b"]}
    assert "dropped" not in outcome.context  # an agent step's own changes do not count


def test_a_failure_rolls_back_the_failed_step_and_every_step_before_it_in_reverse():
    journal = Journal()
    journal.reset(fail={("run", "c")})
    outcome = runner_for(journal).run(CHAIN, {})
    assert journal.entries[-4:] == [("rollback", "c"), ("rollback", "w"), ("rollback", "b"),
                                    ("rollback", "a")]
    assert outcome.failure.step == "c" and outcome.failure.error == STEP_FAILED
    assert outcome.failure.message == "InjectedFailure: run of c failed as told"
    assert [r.step for r in outcome.rollbacks] == ["c", "w", "b", "a"]
    assert all(r.succeeded for r in outcome.rollbacks)
    assert outcome.context is None


def test_a_failing_rollback_is_recorded_and_the_remaining_rollbacks_still_run():
    journal = Journal()
    journal.reset(fail={("run", "c"), ("rollback", "w"), ("rollback", "b")})
    outcome = runner_for(journal).run(CHAIN, {})
    assert [entry for entry in journal.entries if entry[0] == "rollback"] == [
        ("rollback", "c"), ("rollback", "w"), ("rollback", "b"), ("rollback", "a")]
    assert outcome.rollbacks == (
        RollbackRecord("c"),
        RollbackRecord("w", STEP_FAILED, "InjectedFailure: rollback of w failed as told"),
        RollbackRecord("b", STEP_FAILED, "InjectedFailure: rollback of b failed as told"),
        RollbackRecord("a"))


def test_steps_after_the_failed_one_neither_run_nor_roll_back():
    journal = Journal()
    journal.reset(fail={("run", "a")})
    outcome = runner_for(journal).run(CHAIN, {})
    assert journal.entries == [("run", "a"), ("rollback", "a")]
    assert outcome.ran == ("a",)


def test_rollbacks_see_the_context_from_before_the_failed_step():
    seen: list[FlowContext] = []
    registry = StepRegistry()

    @step("first", registry=registry)
    class First:
        def run(self, ctx, env):
            ctx["hostUuid"] = "host-1"

        def rollback(self, ctx, env):
            seen.append(dict(ctx))

    @step("second", registry=registry)
    class Second:
        def run(self, ctx, env):
            ctx["volumeUuid"] = "half-made"
            raise ValueError("no room")

        def rollback(self, ctx, env):
            seen.append(dict(ctx))

    runner = runner_for(Journal(), registry)
    outcome = runner.run(Chain("t", (ChainStep("first"), ChainStep("second"))), {})
    assert outcome.failure.message == "ValueError: no room"
    assert seen == [{"hostUuid": "host-1"}, {"hostUuid": "host-1"}]


def test_rolling_a_flow_back_again_is_harmless_when_its_rollbacks_are_idempotent():
    """After a crash nobody knows how far the rollbacks got: they are all run again."""
    allocated: set[str] = set()
    registry = StepRegistry()

    @step("allocate", registry=registry)
    class Allocate:
        def run(self, ctx: FlowContext, env: StepEnv) -> None:
            allocated.add("ip-1")
            ctx["ip"] = "ip-1"

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            allocated.discard(ctx.get("ip", ""))

    chain = Chain("t", (ChainStep("allocate"),))
    runner = runner_for(Journal(), registry)
    outcome = runner.run(chain, {})
    assert allocated == {"ip-1"}
    first = runner.roll_back(chain, outcome.context, "allocate")
    second = runner.roll_back(chain, outcome.context, "allocate")
    assert allocated == set()
    assert first == second == (RollbackRecord("allocate"),)


def test_an_agent_reporting_failure_fails_the_step():
    journal = Journal()
    journal.reset(agent_fails={"w"})
    outcome = runner_for(journal).run(CHAIN, {})
    assert outcome.failure.step == "w" and outcome.failure.error == AGENT_COMMAND_FAILED
    assert outcome.failure.message == "w: the hypervisor said no"
    assert [r.step for r in outcome.rollbacks] == ["w", "b", "a"]


def test_an_agent_that_does_not_report_in_time_fails_the_step_with_a_timeout():
    journal = Journal()
    journal.reset(agent_silent={"w"})
    waited: list[float] = []
    registry = StepRegistry()
    for name in "abc":
        recording_step(journal, name, registry)
    recording_agent_step(journal, "w", registry)
    agents = FakeAgents(journal)

    class RecordingWaiter:
        def wait(self, command_uuid, timeout_seconds):
            waited.append(timeout_seconds)
            return agents.wait(command_uuid, timeout_seconds)

    outcome = LocalFlowRunner(fake_env(agents), RecordingWaiter(), registry).run(CHAIN, {})
    assert waited == [30]  # the chain's timeoutSeconds
    assert outcome.failure.step == "w" and outcome.failure.error == AGENT_TIMED_OUT
    assert [r.step for r in outcome.rollbacks] == ["w", "b", "a"]


def test_a_step_nobody_registered_fails_the_flow_instead_of_crashing_it():
    journal = Journal()
    registry = StepRegistry()
    recording_step(journal, "a", registry)
    outcome = runner_for(journal, registry).run(
        Chain("t", (ChainStep("a"), ChainStep("missing"))), {})
    assert outcome.failure.step == "missing" and outcome.failure.error == "UnknownStep"
    assert outcome.rollbacks[0] == RollbackRecord(
        "missing", "UnknownStep", "no step named 'missing' is registered")
    assert outcome.rollbacks[1] == RollbackRecord("a")


def test_a_job_shows_the_current_step_and_after_a_failure_the_error_and_each_rollback():
    journal = Journal()
    journal.reset(fail={("run", "w"), ("send", "w"), ("rollback", "a")})
    views: list[dict] = []

    def sink(progress: FlowProgress) -> None:
        views.append(progress.to_view())

    outcome = runner_for(journal).run(CHAIN, {}, sink)
    assert [v["currentStep"] for v in views if v["state"] == "Running"] == ["a", "b", "w"]
    assert [v["currentStep"] for v in views if v["state"] == "RollingBack"] == ["w", "b", "a"]
    final = views[-1]
    assert final["state"] == "Failed" and final["failedStep"] == "w"
    assert final["error"] == {"code": STEP_FAILED,
                              "message": "InjectedFailure: run of w failed as told"}
    assert final["rollbacks"] == [
        {"step": "w", "succeeded": True}, {"step": "b", "succeeded": True},
        {"step": "a", "succeeded": False,
         "error": {"code": STEP_FAILED,
                   "message": "InjectedFailure: rollback of a failed as told"}}]
    error = FlowFailed.from_outcome(outcome).to_dict()
    assert error["code"] == "FlowFailed"
    assert error["message"] == "step w failed: InjectedFailure: run of w failed as told"
    assert error["details"]["rollbacks"] == final["rollbacks"]


def test_a_long_running_step_runs_outside_the_transaction_its_neighbours_share():
    """The embedded runner batches database steps into one transaction; a step that works
    for minutes in its own short transactions (an Ansible run) must never sit inside one,
    or every other writer would wait for it."""
    registry, open_now, seen = StepRegistry(), [], {}

    @contextmanager
    def transaction():
        open_now.append(True)
        try:
            yield
        finally:
            open_now.pop()

    for name in ("before", "deploy", "after"):
        @step(name, registry=registry)
        class Noting:
            def run(self, ctx: FlowContext, env: StepEnv, name=name) -> None:
                seen[name] = bool(open_now)

            def rollback(self, ctx: FlowContext, env: StepEnv) -> None: ...

    chain = Chain("c", (ChainStep("before"), ChainStep("deploy", long_running=True),
                        ChainStep("after")))
    agents = FakeAgents(Journal())
    outcome = LocalFlowRunner(fake_env(agents), agents, registry,
                              transaction=transaction).run(chain, {})
    assert outcome.succeeded
    assert seen == {"before": True, "deploy": False, "after": True}
