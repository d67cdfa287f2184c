"""One contract, two backends: the in-process queue and SQS FIFO (moto) must both start the
operations of a signature in order, run at most its level at once, starve no signature and
apply a duplicate once."""
from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chalicelib.ops.sqs import group_id
from tests.support.queues import Interval, LocalHarness, Recorder, SqsHarness, wait_until_ran

_ids = itertools.count()


@pytest.fixture(params=["local", "sqs"])
def harness(request, monkeypatch):
    if request.param == "local":
        queue = LocalHarness()
        yield queue
        queue.close()
        return
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        queue = SqsHarness()
        yield queue
        queue.close()


def submit(harness, recorder: Recorder, signature: str, level: int, seconds: float) -> str:
    op_id = f"op-{next(_ids)}"
    harness.submit(op_id, signature, level, recorder.operation(op_id, signature, level, seconds))
    return op_id


def most_at_once(intervals: list[Interval]) -> int:
    events = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def check_contract(harness, recorder: Recorder) -> None:
    """What must hold for every signature, whatever the backend."""
    by_signature: dict[str, list[Interval]] = {}
    for interval in recorder.intervals.values():
        by_signature.setdefault(interval.signature, []).append(interval)
    assert all(count == 1 for count in recorder.runs.values()), recorder.runs
    for signature, intervals in by_signature.items():
        intervals.sort(key=lambda i: i.order)
        level = intervals[0].level
        assert most_at_once(intervals) <= level, signature
        if level == 1:
            for before, after in itertools.pairwise(intervals):
                assert after.start >= before.end, f"{signature}: out of order or overlapped"
        elif harness.name == "local":
            # In order with N slots: when the k-th starts, all but N-1 of those before it
            # have ended.
            for k, interval in enumerate(intervals):
                ended = sum(1 for i in intervals[:k] if i.end <= interval.start)
                assert ended >= k - level + 1, f"{signature}: op {k} started too early"
        else:
            # SQS spreads a level-N signature over N message groups, each strictly in order.
            lanes: dict[str, list[Interval]] = {}
            for interval in intervals:
                lanes.setdefault(group_id(signature, interval.op_id, level), []).append(interval)
            for lane in lanes.values():
                for before, after in itertools.pairwise(lane):
                    assert after.start >= before.end, f"{signature}: group out of order"


def test_one_signature_runs_strictly_in_order(harness):
    recorder = Recorder()
    ids = [submit(harness, recorder, "vm:a", 1, 0.002) for _ in range(15)]
    wait_until_ran(recorder, ids)
    check_contract(harness, recorder)
    starts = [recorder.intervals[i].start for i in ids]
    assert starts == sorted(starts)


def test_a_level_n_signature_runs_n_at_once_and_no_more(harness):
    recorder = Recorder()
    ids = [submit(harness, recorder, "host:h", 3, 0.05) for _ in range(12)]
    wait_until_ran(recorder, ids)
    check_contract(harness, recorder)
    intervals = [recorder.intervals[i] for i in ids]
    # On SQS the spread over 3 groups follows the ids' hashes, so 2 at once is the floor.
    assert most_at_once(intervals) >= (3 if harness.name == "local" else 2)


def test_a_busy_signature_does_not_starve_the_others(harness):
    recorder = Recorder()
    busy = [submit(harness, recorder, "vm:busy", 1, 0.03) for _ in range(20)]
    others = [submit(harness, recorder, f"vm:other-{n}", 1, 0.001) for n in range(10)]
    wait_until_ran(recorder, busy + others)
    check_contract(harness, recorder)
    busy_end = max(recorder.intervals[i].end for i in busy)
    assert max(recorder.intervals[i].end for i in others) < busy_end - 0.2


def test_a_duplicate_is_applied_once(harness):
    recorder = Recorder()
    op_id = submit(harness, recorder, "vm:d", 1, 0.001)
    harness.submit(op_id, "vm:d", 1, recorder.operation(op_id, "vm:d", 1, 0.001))
    last = submit(harness, recorder, "vm:d", 1, 0.001)
    wait_until_ran(recorder, [op_id, last])
    time.sleep(0.05)
    assert recorder.runs[op_id] == 1


def test_signatures_run_in_parallel(harness):
    recorder = Recorder()
    ids = [submit(harness, recorder, f"vm:{n}", 1, 0.1) for n in range(6)]
    wait_until_ran(recorder, ids)
    intervals = [recorder.intervals[i] for i in ids]
    assert most_at_once(intervals) >= 4


operations = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3)),  # (signature, milliseconds)
    min_size=1, max_size=25,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations, levels=st.lists(st.integers(1, 3), min_size=5, max_size=5))
def test_random_operations_keep_the_contract(harness, ops, levels):
    recorder = Recorder()
    run = next(_ids)
    ids = [submit(harness, recorder, f"sig:{run}-{sig}", levels[sig], ms / 1000)
           for sig, ms in ops]
    wait_until_ran(recorder, ids)
    check_contract(harness, recorder)


def test_local_queue_hands_out_slots_in_submission_order():
    """Deterministic: with level 2, the third operation gets the first slot that frees."""
    import threading

    from chalicelib.ops import Ticket
    from chalicelib.ops.local import LocalQueue

    queue = LocalQueue(workers=8)
    started: list[int] = []
    releases: dict[int, threading.Event] = {n: threading.Event() for n in range(5)}
    lock = threading.Lock()

    def ticket(n: int) -> Ticket:
        def run(release):
            with lock:
                started.append(n)
            releases[n].wait(5)
            release()
        return Ticket(f"t{n}", "host:x", 2, run)

    def wait_started(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(started) < count:
            assert time.monotonic() < deadline
            time.sleep(0.001)

    try:
        for n in range(5):
            queue.submit(ticket(n))
        wait_started(2)
        time.sleep(0.02)
        assert sorted(started) == [0, 1] and queue.waiting("host:x") == 3
        releases[1].set()
        wait_started(3)
        assert started[2] == 2
        releases[0].set()
        wait_started(4)
        assert started[3] == 3
        releases[2].set()
        releases[3].set()
        wait_started(5)
        assert started[4] == 4
    finally:
        for event in releases.values():
            event.set()
        queue.shutdown()
