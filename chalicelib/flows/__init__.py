"""The flow engine: chains of steps with run and rollback, run in this process (embedded) or
compiled to Step Functions state machines (serverless), step for step the same.

Declaring steps (in a module listed in ``steps.STEP_MODULES``)::

    from chalicelib.flows import AgentCommandRequest, FlowContext, StepEnv, agent_step, step

    @step("vm.allocate-host")
    class AllocateHost:
        def run(self, ctx: FlowContext, env: StepEnv) -> None:
            with env.session() as db:          # one short transaction per piece of work
                ctx["hostUuid"] = HostAllocator(db).allocate(ctx["vmUuid"]).uuid

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            if "hostUuid" in ctx:              # idempotent: may run twice, or after a
                with env.session() as db:      # run that failed before it set hostUuid
                    release_host(db, ctx["vmUuid"])

    @agent_step("vm.create-on-hypervisor")
    class CreateOnHypervisor:
        def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
            return AgentCommandRequest(ctx["hostUuid"], "vm.create", {"uuid": ctx["vmUuid"]})

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            env.agents.send(AgentCommandRequest(ctx["hostUuid"], "vm.destroy",
                                                {"uuid": ctx["vmUuid"]}))  # not waited for

The context is a JSON dict of ids and small values (Step Functions passes at most 256 KB);
a step's changes to it count only if the step succeeds. An agent step's ``command`` may
write to the database but not to the context: the flow sends the command, waits for the
agent's report (at most the chain's ``timeoutSeconds``; on AWS the task waits with
``.waitForTaskToken``) and puts the reported result at ``agent_result(ctx, step_name)``.
A failed report is ``AgentCommandFailed``, no report in time ``States.Timeout``.

Chains are data (``statemachines/chains/*.json``, see :mod:`chalicelib.flows.chains`); agent
steps are marked there (``waitsForAgent``). A plugin fills an extension point of every chain
that has it with ``@step("eip.attach", extends="vm.after_create")``.

Running a chain::

    chain = ChainLibrary.load().resolve("create-vm", STEPS)
    # embedded
    outcome = LocalFlowRunner(env, PollingAgentWaiter(db)).run(chain, {"vmUuid": uuid}, sink)
    # serverless: one execution per job, named by the job's uuid
    runner = StepFunctionsFlowRunner(boto3.client("stepfunctions"), arn_prefix)
    outcome = runner.run("create-vm", job_uuid, {"vmUuid": uuid}, sink)

Either way ``outcome`` is a :class:`FlowOutcome` (steps run, final context, the failed step
and its error, each rollback and whether it failed) and ``sink`` gets the job-visible
:class:`FlowProgress`. ``FlowFailed.from_outcome(outcome)`` is what a failed job reports.
On AWS an agent's report resumes its flow through :func:`resume_waiting_flows`.
"""
from chalicelib.flows.chains import Chain, ChainLibrary, ChainStep
from chalicelib.flows.outcome import (
    FlowFailed,
    FlowFailure,
    FlowOutcome,
    FlowProgress,
    RollbackRecord,
)
from chalicelib.flows.steps import (
    STEPS,
    AgentCommandRequest,
    AgentStep,
    FlowContext,
    Step,
    StepEnv,
    StepRegistry,
    agent_result,
    agent_step,
    step,
)

__all__ = [
    "STEPS", "AgentCommandRequest", "AgentStep", "Chain", "ChainLibrary", "ChainStep",
    "FlowContext", "FlowFailed", "FlowFailure", "FlowOutcome", "FlowProgress",
    "RollbackRecord", "Step", "StepEnv", "StepRegistry", "agent_result", "agent_step", "step",
]
