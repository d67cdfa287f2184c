"""Aerie's Chalice app: the HTTP API and the job consumer. Wiring only."""
import json

from chalicelib import runtime
from chalicelib.api.chalice_app import AerieChalice, register_operations
from chalicelib.api.jobs import run_job
from chalicelib.api.registry import OPERATIONS, operation

app = AerieChalice(app_name="aerie")

register_operations(app, OPERATIONS, runtime.current)


@app.on_sqs_message(queue="aerie-jobs", batch_size=1)
def run_jobs(event):
    for record in event:
        run_job(runtime.current().db, json.loads(record.body)["jobUuid"], operation)
