"""ZStack's VM state machine: which operation may start from which state, and where it ends."""
from __future__ import annotations

import pytest

from chalicelib.compute.capacity import HOLDING_STATES
from chalicelib.compute.vm_states import (
    EXPUNGED,
    OPERATIONS,
    TRANSIENT_STATES,
    TRANSITIONS,
    check,
    final_state,
)
from chalicelib.db.models.compute import VM_STATES
from chalicelib.errors import Conflict, InvalidState

# (operation, from state) → (transient, on success, on failure)
EXPECTED = {
    ("create", "Created"): ("Starting", "Running", "Error"),
    ("start", "Stopped"): ("Starting", "Running", "Stopped"),
    ("stop", "Running"): ("Stopping", "Stopped", "Running"),
    ("stop", "Unknown"): ("Stopping", "Stopped", "Unknown"),
    ("reboot", "Running"): ("Rebooting", "Running", "Running"),
    ("destroy", "Running"): ("Destroying", "Destroyed", "Running"),
    ("destroy", "Stopped"): ("Destroying", "Destroyed", "Stopped"),
    ("destroy", "Created"): ("Destroying", "Destroyed", "Created"),
    ("destroy", "Error"): ("Destroying", "Destroyed", "Error"),
    ("destroy", "Unknown"): ("Destroying", "Destroyed", "Unknown"),
    ("recover", "Destroyed"): (None, "Stopped", "Destroyed"),
    ("expunge", "Destroyed"): ("Expunging", EXPUNGED, "Destroyed"),
}


@pytest.mark.parametrize("operation, state", list(EXPECTED))
def test_each_legal_transition_goes_where_zstack_goes(operation, state):
    transient, success, failure = EXPECTED[(operation, state)]
    assert check(state, operation).transient == transient
    assert final_state(operation, state, succeeded=True) == success
    assert final_state(operation, state, succeeded=False) == failure


def test_every_other_pair_is_refused_with_a_409_naming_the_state_and_the_allowed_ones():
    refused = 0
    for operation in OPERATIONS:
        for state in VM_STATES:
            if (operation, state) in EXPECTED:
                continue
            with pytest.raises(InvalidState) as raised:
                check(state, operation)
            error = raised.value
            assert isinstance(error, Conflict)  # the API maps Conflict to 409
            assert f"cannot {operation} a VM that is {state}" in error.message
            for allowed in TRANSITIONS[operation].starts_from:
                assert allowed in error.message
            assert error.details["allowedStates"] == list(TRANSITIONS[operation].starts_from)
            refused += 1
    assert refused == len(OPERATIONS) * len(VM_STATES) - len(EXPECTED)


def test_no_operation_starts_while_another_is_in_flight():
    for step in TRANSITIONS.values():
        assert not set(step.starts_from) & set(TRANSIENT_STATES)


def test_the_table_names_only_real_states():
    for step in TRANSITIONS.values():
        named = {*step.starts_from, step.on_success, step.transient, step.on_failure} - {None}
        assert named <= {*VM_STATES, EXPUNGED}


def test_a_vm_being_started_or_stopped_holds_its_host_and_one_being_destroyed_does_not():
    assert {"Starting", "Stopping", "Rebooting", "Running"} <= set(HOLDING_STATES)
    assert not {"Destroying", "Destroyed", "Stopped", "Created", "Error"} & set(HOLDING_STATES)


def test_an_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown VM operation 'migrate'"):
        check("Running", "migrate")


def test_a_vm_inserted_to_be_created_shows_starting_and_announces_it_once_committed():
    from types import SimpleNamespace

    from chalicelib.compute.vm_states import begin_new

    session = SimpleNamespace(info={})  # all begin_new touches: the events kept for commit
    assert begin_new(session, "vm-1", "create") == "Starting"
    (pending,) = session.info.values()
    assert pending == [("vm.state.changed", {"vmUuid": "vm-1", "hostUuid": None,
                                             "from": "Created", "to": "Starting",
                                             "by": "operation"})]
    with pytest.raises(InvalidState, match="cannot start a VM that is Created"):
        begin_new(SimpleNamespace(info={}), "vm-2", "start")
