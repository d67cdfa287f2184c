"""The embedded runner's batches on a real database: a chain's consecutive database steps
share one transaction, so a step that fails takes its batch's work with it, and the failed
step and the ones before it are still rolled back one by one."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from chalicelib.db.database import Database
from chalicelib.flows.chains import Chain, ChainStep
from chalicelib.flows.local import LocalFlowRunner
from chalicelib.flows.outcome import STEP_FAILED, RollbackRecord
from chalicelib.flows.steps import FlowContext, StepEnv, StepRegistry, step
from tests.unit.test_flow_fakes import FakeAgents, Journal

CHAIN = Chain("batch", (ChainStep("a"), ChainStep("b"), ChainStep("c")))


@pytest.fixture
def database(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'batches.db'}")
    with database.session() as db:
        db.execute(text("CREATE TABLE marks (step TEXT NOT NULL)"))
    yield database
    database.dispose()


def marks(database: Database) -> list[str]:
    with database.session() as db:
        return list(db.scalars(text("SELECT step FROM marks ORDER BY rowid")))


def marking_step(journal: Journal, name: str, registry: StepRegistry) -> None:
    """Writes a row in a session of its own; its rollback only records that it ran, so a
    row left behind would be one its batch committed."""
    @step(name, registry=registry)
    class MarkingStep:
        def run(self, ctx: FlowContext, env: StepEnv) -> None:
            with env.session() as db:
                db.execute(text("INSERT INTO marks (step) VALUES (:step)"), {"step": name})
            journal.record("run", name)

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            journal.record("rollback", name)


def runner(database: Database, journal: Journal) -> LocalFlowRunner:
    registry = StepRegistry()
    for name in "abc":
        marking_step(journal, name, registry)
    agents = FakeAgents(journal)
    return LocalFlowRunner(StepEnv(session=database.session, agents=agents), agents,
                           registry, transaction=database.transaction)


def test_a_batch_commits_its_steps_work_together(database):
    journal = Journal()
    outcome = runner(database, journal).run(CHAIN, {})
    assert outcome.succeeded
    assert marks(database) == ["a", "b", "c"]


def test_a_failing_step_commits_none_of_its_batch_and_rolls_back_as_before(database):
    journal = Journal()
    journal.reset(fail={("run", "c")})  # c fails after writing its row
    outcome = runner(database, journal).run(CHAIN, {})
    assert outcome.failure.step == "c" and outcome.failure.error == STEP_FAILED
    assert marks(database) == []  # neither c's row nor those a and b wrote before it
    assert [entry for entry in journal.entries if entry[0] == "rollback"] == [
        ("rollback", "c"), ("rollback", "b"), ("rollback", "a")]
    assert outcome.rollbacks == (RollbackRecord("c"), RollbackRecord("b"),
                                 RollbackRecord("a"))


def test_sessions_on_the_same_thread_join_a_transaction(database):
    with pytest.raises(RuntimeError), database.transaction() as outer:
        with database.session() as joined:
            assert joined is outer
            joined.execute(text("INSERT INTO marks (step) VALUES ('joined')"))
        assert marks(database) == ["joined"]  # seen inside, not yet committed
        raise RuntimeError("the transaction's block fails")
    assert marks(database) == []  # the joined block's work went with the transaction
    with database.transaction(), database.session() as db:
        db.execute(text("INSERT INTO marks (step) VALUES ('kept')"))
    assert marks(database) == ["kept"]
