"""A step that loses a lock race (MySQL deadlock or lock wait timeout) is run again; any
other database error fails the step at once."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from chalicelib.flows.invocation import DATABASE_RETRIES, StepFailed, run_step


class Flaky:
    name = "test.flaky"

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.runs = 0

    def run(self, ctx, env) -> None:
        self.runs += 1
        ctx.setdefault("seen", []).append(self.runs)
        if self.errors:
            code = self.errors.pop(0)
            raise OperationalError("UPDATE hosts ...", {}, Exception(code, "mysql says no"))
        ctx["done"] = True

    def rollback(self, ctx, env) -> None:
        pass


def test_a_deadlocked_step_is_run_again_on_a_fresh_context():
    step = Flaky([1213, 1205])
    result = run_step(step, {}, env=None)
    assert step.runs == 3
    assert result == {"seen": [3], "done": True}  # failed attempts left nothing behind


def test_other_database_errors_and_endless_deadlocks_fail_the_step():
    with pytest.raises(StepFailed, match="mysql says no"):
        run_step(Flaky([2013]), {}, env=None)  # lost connection: not a lock race
    endless = Flaky([1213] * (DATABASE_RETRIES + 1))
    with pytest.raises(StepFailed):
        run_step(endless, {}, env=None)
    assert endless.runs == DATABASE_RETRIES
