"""What a long step is doing right now, shown on its job beside the current step.

A step that takes minutes (deploying an agent with Ansible) reports its own progress through
here, in its own short transactions; both runtimes show it the same way, since the step
writes it to the job itself.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from chalicelib.db.models import ApiJob


def show_step_detail(db: Session, job_uuid: str, step: str, detail: dict[str, Any]) -> None:
    job = db.get(ApiJob, job_uuid)
    if job is None or job.state != "Running":
        return
    view = json.loads(job.progress) if job.progress else {}
    view.update(currentStep=step, detail=detail)
    job.progress = json.dumps(view)
