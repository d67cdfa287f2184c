"""Operation queues: every operation names a sync signature and a level N; operations on one
signature start in submission order and at most N run at once, for their whole life.

``local.LocalQueue`` does it in-process (embedded); ``sqs.SqsFifoQueue`` with SQS FIFO
message groups (serverless). Both take the same ``Ticket``.
"""
from chalicelib.ops.ticket import Release, Ticket

__all__ = ["Release", "Ticket"]
