"""Chains are data: extending, replacing, inserting, extension points filled by plugins."""
from __future__ import annotations

import json

import pytest

from chalicelib.flows.chains import ChainError, ChainLibrary, ChainStep, parse_entry
from chalicelib.flows.steps import StepRegistry, agent_step, step
from tests.unit.test_flow_fakes import Journal, recording_agent_step, recording_step

BASE = {"name": "base", "steps": ["one", {"name": "two", "waitsForAgent": True,
                                          "timeoutSeconds": 42}, "@after", "three"]}


def names(chain) -> list[str]:
    return [s.name for s in chain.steps]


def test_the_appliance_vm_chain_is_the_create_vm_chain_with_its_nic_step_replaced():
    library = ChainLibrary.load()
    create_vm = library.resolve("create-vm", StepRegistry())
    appliance = library.resolve("create-appliance-vm", StepRegistry())
    assert names(create_vm) == [
        "vm.select-backup-storage", "vm.allocate-host", "vm.allocate-volumes",
        "vm.allocate-nics", "vm.instantiate-volumes", "vm.create-on-hypervisor"]
    assert names(appliance) == [
        "appliance.allocate-nics" if name == "vm.allocate-nics" else name
        for name in names(create_vm)]
    assert [s.waits_for_agent for s in appliance.steps] == [False] * 4 + [True] * 2


def test_a_chain_extends_another_replacing_and_inserting_steps():
    library = ChainLibrary({"base": BASE, "derived": {
        "name": "derived", "extends": "base", "replace": {"one": "uno", "@after": "@later"},
        "insert": [{"before": "uno", "steps": ["zero"]},
                   {"after": "two", "steps": [{"name": "wait", "waitsForAgent": True}]}]}})
    chain = library.resolve("derived", StepRegistry())
    assert names(chain) == ["zero", "uno", "two", "wait", "three"]
    assert chain.step("two") == ChainStep("two", 42)
    assert chain.step("wait").agent_timeout_seconds == 300  # the default
    assert names(library.resolve("base", StepRegistry())) == ["one", "two", "three"]


def test_plugins_fill_extension_points_in_every_chain_that_has_them():
    journal, registry = Journal(), StepRegistry()
    recording_step(journal, "plugin.first", registry, extends="after")
    recording_agent_step(journal, "plugin.waits", registry, extends="after", timeout_seconds=9)
    recording_step(journal, "plugin.elsewhere", registry, extends="elsewhere")
    library = ChainLibrary({"base": BASE, "derived": {"name": "derived", "extends": "base"}})
    for name in ("base", "derived"):
        chain = library.resolve(name, registry)
        assert names(chain) == ["one", "two", "plugin.first", "plugin.waits", "three"]
        assert chain.step("plugin.waits").agent_timeout_seconds == 9
        assert not chain.step("plugin.first").waits_for_agent


@pytest.mark.parametrize(("chains", "problem"), [
    ({"a": {"name": "a", "extends": "b"}, "b": {"name": "b", "extends": "a"}}, "circle"),
    ({"a": {"name": "a", "extends": "nowhere"}}, "no chain named 'nowhere'"),
    ({"a": {"name": "a", "steps": ["x"], "replace": {"y": "z"}}}, "no step 'y'"),
    ({"a": {"name": "a", "steps": ["x"], "insert": [{"steps": ["z"]}]}}, "before' or 'after"),
    ({"a": {"name": "a", "steps": ["x", "x"]}}, "names a step twice"),
    ({"a": {"name": "a", "steps": ["x.y", "x-y"]}}, "names a step twice"),
    ({"a": {"name": "a", "steps": [3]}}, "neither a step name"),
    ({"a": {"name": "a", "steps": ["@empty"]}}, "has no steps"),
])
def test_a_chain_that_cannot_be_resolved_says_why(chains, problem):
    with pytest.raises(ChainError, match=problem):
        ChainLibrary(chains).resolve("a", StepRegistry())


def test_a_chain_file_is_named_after_its_chain(tmp_path):
    (tmp_path / "create-vm.json").write_text(json.dumps({"name": "other", "steps": ["x"]}))
    with pytest.raises(ChainError, match="its name must be 'create-vm'"):
        ChainLibrary.load(tmp_path)


@pytest.mark.parametrize("decorator", [step, agent_step])
def test_a_step_without_its_rollback_is_refused_when_it_is_declared(decorator):
    class Forgetful:
        def run(self, ctx, env) -> None: ...

        def command(self, ctx, env) -> None: ...

    with pytest.raises(TypeError, match="rollback"):
        decorator("forgetful", registry=StepRegistry())(Forgetful)


def test_a_long_running_step_is_read_from_its_chain():
    step_entry = parse_entry({"name": "host.deploy-agent", "longRunning": True}, "c")
    assert step_entry.long_running and not step_entry.waits_for_agent
    assert not parse_entry("vm.allocate-host", "c").long_running
