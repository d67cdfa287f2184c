"""The link between aerie up's API and engine processes: messages arrive whole and in order
both ways, a sender never waits for a peer that does not read, and each side learns when
the other has gone."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from chalicelib.runtime.link import Link, LinkClosed


def _pair() -> tuple[Link, Link]:
    ours, theirs = socket.socketpair()
    return Link(ours, "engine"), Link(theirs, "api")


def _wait_closed(link: Link) -> None:
    deadline = time.monotonic() + 5
    while not link.closed:
        assert time.monotonic() < deadline, "the link did not see the other side go"
        time.sleep(0.01)


def test_messages_arrive_in_order_both_ways():
    api, engine = _pair()
    jobs, events = [], []
    done = threading.Event()

    def on_job(body) -> None:
        jobs.append(body)
        if len(jobs) == 1000:
            done.set()
    engine.on("job", on_job)
    api.on("event", events.append)
    for link in (api, engine):
        link.start()
    try:
        for n in range(1000):
            api.send("job", [f"job-{n}", "vm:x", 1])
        engine.send("event", ["agent.command.finished", {"result": {"big": "x" * 200_000}}])
        assert done.wait(10)
        assert jobs == [[f"job-{n}", "vm:x", 1] for n in range(1000)]
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events == [["agent.command.finished", {"result": {"big": "x" * 200_000}}]]
    finally:
        api.close()
        engine.close()


def test_a_sender_does_not_wait_for_a_peer_that_does_not_read():
    api, engine = _pair()  # the engine never starts reading: it is busy, or stopped
    api.start()
    try:
        started = time.monotonic()
        for n in range(20_000):  # far more than a socket buffer holds
            api.send("job", [f"job-{n}", "zone:z", 1])
        assert time.monotonic() - started < 5
    finally:
        api.close()
        engine.close()


def test_each_side_learns_when_the_other_has_gone():
    api, engine = _pair()
    gone = threading.Event()
    api.when_closed(gone.set)
    api.start()
    engine.start()
    engine.close()
    assert gone.wait(5)
    assert api.closed
    with pytest.raises(LinkClosed):
        api.send("job", ["job-1", "zone:z", 1])
    api.close()


def test_a_callback_registered_after_the_other_side_went_is_called_at_once():
    api, engine = _pair()
    api.start()
    engine.close()
    _wait_closed(api)
    called = []
    api.when_closed(lambda: called.append(threading.current_thread()))
    assert called == [threading.current_thread()]
    api.close()


@pytest.mark.parametrize("frame", [b"not json", b'{"kind": "job"}', b"[1, 2, 3]"])
def test_a_malformed_message_closes_the_link_on_both_sides(frame):
    ours, theirs = socket.socketpair()
    engine = Link(theirs, "api")
    gone = threading.Event()
    engine.when_closed(gone.set)
    engine.start()
    ours.sendall(struct.pack("!I", len(frame)) + frame)
    try:
        assert gone.wait(5)
        ours.settimeout(5)
        assert ours.recv(1) == b""  # the sender sees the link close too
    finally:
        ours.close()
        engine.close()


def test_a_message_nobody_handles_is_skipped_and_the_next_one_arrives():
    api, engine = _pair()
    seen = threading.Event()
    engine.on("job", lambda _body: seen.set())
    engine.start()
    api.start()
    try:
        api.send("unknown", {})
        api.send("job", ["job-1", "zone:z", 1])
        assert seen.wait(5)
    finally:
        api.close()
        engine.close()


def test_only_the_events_the_other_process_wants_cross(monkeypatch):
    """Each side of aerie up's link tells the other which events its subscribers want."""
    from chalicelib import events
    from chalicelib.runtime.engine_process import connect_events

    api, engine = _pair()
    sent: list[str] = []
    original = api.send

    def counting(kind, body):
        if kind == "event":
            sent.append(body[0])
        original(kind, body)
    monkeypatch.setattr(api, "send", counting)
    disconnect = connect_events(api)  # this process is the API process; its peer, a stub
    wants = threading.Event()
    engine.on("wants", lambda _names: wants.set())
    engine.on("event", lambda _body: None)
    api.start()
    engine.start()
    try:
        events.publish("vm.state.changed", {})
        assert sent == ["vm.state.changed"]  # everything, until the other side says
        engine.send("wants", ["agent.command.finished"])
        deadline = time.monotonic() + 5
        while sent and time.monotonic() < deadline:  # until the wants have been heard
            sent.clear()
            events.publish("vm.state.changed", {})
            time.sleep(0.01)
        assert wants.wait(5)  # the API process told its own wants too
        events.publish("vm.state.changed", {})
        events.publish("agent.command.finished", {"commandUuid": "c2"})
        assert sent == ["agent.command.finished"]
    finally:
        disconnect()
        api.close()
        engine.close()


def test_a_job_handed_to_an_engine_that_is_gone_is_left_for_the_next_start(caplog):
    """The API committed the job before handing it over: its caller's 202 stands, and the
    job stays Waiting in the jobs table, where the next start finds it."""
    from chalicelib.runtime.engine_process import EngineProcess

    api, engine = _pair()
    api.start()
    engine.close()
    _wait_closed(api)
    handle = EngineProcess(process=None, link=api, stop_seconds=1)
    handle.submit("job-1", "vm:x", 1)  # does not raise
    assert "job job-1 stays Waiting and runs when aerie up starts again" in caplog.text
    api.close()
