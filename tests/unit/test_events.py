"""The event bus, and its bridge to aerie up's other process: an event published here reaches
this process's subscribers and the bridge; an event from the other process reaches the
subscribers only, so it never goes back where it came from."""
from __future__ import annotations

from chalicelib import events


def test_published_events_reach_subscribers_and_bridges_delivered_ones_only_subscribers():
    seen, sent = [], []
    unsubscribe = events.subscribe(lambda name, payload: seen.append((name, payload)))
    unbridge = events.bridge(lambda name, payload: sent.append((name, payload)))
    try:
        events.publish("vm.state.changed", {"vmUuid": "v1"})
        events.deliver("agent.command.finished", {"commandUuid": "c1"})
    finally:
        unsubscribe()
        unbridge()
    assert seen == [("vm.state.changed", {"vmUuid": "v1"}),
                    ("agent.command.finished", {"commandUuid": "c1"})]
    assert sent == [("vm.state.changed", {"vmUuid": "v1"})]
    events.publish("vm.state.changed", {"vmUuid": "v2"})  # after both were removed
    assert len(seen) == 2 and len(sent) == 1


def test_a_failing_bridge_does_not_fail_the_publisher():
    def broken(_name, _payload):
        raise ConnectionError("the other process is gone")
    seen = []
    unsubscribe = events.subscribe(lambda name, payload: seen.append(name))
    unbridge = events.bridge(broken)
    try:
        events.publish("host.status.changed", {"hostUuid": "h1"})
    finally:
        unsubscribe()
        unbridge()
    assert seen == ["host.status.changed"]


def test_a_subscriber_gets_the_events_it_names_and_wanted_is_their_union():
    seen, changes = [], []
    unwatch = events.watch_wanted(changes.append)
    first = events.subscribe(lambda name, _payload: seen.append(name), ["vm.state.changed"])
    second = events.subscribe(lambda name, _payload: seen.append("2:" + name),
                              ["host.status.changed"])
    try:
        events.publish("vm.state.changed", {})
        events.publish("host.status.changed", {})
        events.publish("job.finished", {})
        assert seen == ["vm.state.changed", "2:host.status.changed"]
        assert events.wanted() == {"vm.state.changed", "host.status.changed"}
        everything = events.subscribe(lambda *_: None)
        assert events.wanted() is None
        everything()
    finally:
        first()
        second()
        unwatch()
    assert changes[1:] == [frozenset({"vm.state.changed"}),
                           frozenset({"vm.state.changed", "host.status.changed"}), None,
                           frozenset({"vm.state.changed", "host.status.changed"}),
                           frozenset({"host.status.changed"}), frozenset()]
