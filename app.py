"""Aerie's Chalice app: the HTTP API and the operation-queue consumer. Wiring only."""
from chalice import Rate

from chalicelib import runtime
from chalicelib.agents.tracker import track
from chalicelib.api.chalice_app import AerieChalice, register_operations
from chalicelib.api.jobs import FlowStillRunning, run_job
from chalicelib.api.registry import OPERATIONS, operation
from chalicelib.flows.agent_waits import step_env
from chalicelib.flows.invocation import handle_step_event
from chalicelib.flows.steps import load_step_modules
from chalicelib.ops.sqs import consume

app = AerieChalice(app_name="aerie")
load_step_modules()

register_operations(app, OPERATIONS, runtime.current)


@app.on_sqs_message(queue="aerie-operations.fifo", batch_size=1)
def run_operations(event):
    # batch_size=1: the message stays in flight (its group withheld) until the job ends.
    for record in event:
        try:
            consume(record.body, lambda job_uuid: run_job(
                runtime.current().db, job_uuid, operation, runtime.current().flows))
        except FlowStillRunning:
            # Its turn is up but its flow goes on: fail on purpose so the message is not
            # deleted, and have it back at once, so the next delivery waits for the flow.
            runtime.current().jobs.hand_back(record.receipt_handle)
            raise
    runtime.current().agents.deliver_pending()  # commands the job queued for host agents


@app.schedule(Rate(1, unit=Rate.MINUTES))
def track_hosts(event):
    with runtime.current().db.session() as session:
        track(session)
    runtime.current().agents.deliver_pending()


@app.lambda_function(name="flow_step")
def flow_step(event, context):
    # One step action of a flow's Step Functions execution (statemachines/*.asl.json).
    return handle_step_event(event, step_env(runtime.current()))
