"""/v1/metrics: what the operation queues are doing, per operation type."""
from __future__ import annotations

from chalicelib.api.operation import Operation
from chalicelib.ops.metrics import operation_metrics

OPERATIONS = [
    Operation("GetMetrics", "GET", "/v1/metrics", None,
              lambda ctx, r: operation_metrics(ctx.session),
              "Per operation type: queued, running, completed, failed, mean and max run and "
              "wait times", admin_only=True, tags=("meta",)),
]
