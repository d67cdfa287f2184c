"""A VM's life, as ZStack runs it: which operation may start from which state, the state the
VM shows while the operation runs, and where it ends up when the operation succeeds or fails.

A flow calls :func:`begin` before its first step (:func:`begin_new` for a VM the same
transaction inserts) and :func:`finish` after its last step (or its last rollback). Both change
the state as :func:`change_state` does, on the VM's row (no object loaded), keeping the host's
CPU and memory exact: a VM that stops holding its host (Running → Destroying, Stopping →
Stopped) gives back what it held, one that holds it again after a failed operation (Destroying
→ Running) takes it back, and a VM settling into a state that runs nowhere (Stopped, Destroyed,
Error, Created) is detached from its host, which becomes its ``last_host_uuid``.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from chalicelib import events
from chalicelib.compute.allocation import (
    Move,
    VmHold,
    holds_host,
    move_vm,
    read_hold,
    read_vm,
)
from chalicelib.db.models.compute import VM_STATES, VmInstance
from chalicelib.errors import InvalidState

# The states an operation passes through; a VM in one of them has an operation in flight.
TRANSIENT_STATES = ("Starting", "Stopping", "Rebooting", "Migrating", "Destroying", "Expunging")
# What expunging leaves: no row at all.
EXPUNGED = "Expunged"


@dataclass(frozen=True)
class Transition:
    """``on_failure`` None: the VM goes back to the state the operation started from.
    ``transient`` None: the state does not change while the operation runs."""

    starts_from: tuple[str, ...]
    transient: str | None
    on_success: str
    on_failure: str | None


TRANSITIONS: dict[str, Transition] = {
    "create": Transition(("Created",), "Starting", "Running", "Error"),
    "start": Transition(("Stopped",), "Starting", "Running", "Stopped"),
    "stop": Transition(("Running", "Unknown"), "Stopping", "Stopped", None),
    "reboot": Transition(("Running",), "Rebooting", "Running", None),
    "destroy": Transition(("Created", "Running", "Stopped", "Unknown", "Error"), "Destroying",
                          "Destroyed", None),
    "recover": Transition(("Destroyed",), None, "Stopped", None),
    "expunge": Transition(("Destroyed",), "Expunging", EXPUNGED, None),
}
OPERATIONS = tuple(TRANSITIONS)


def transition(operation: str) -> Transition:
    try:
        return TRANSITIONS[operation]
    except KeyError:
        raise ValueError(f"unknown VM operation {operation!r}; known: "
                         f"{', '.join(OPERATIONS)}") from None


def check(vm_state: str, operation: str) -> Transition:
    """The transition ``operation`` makes from ``vm_state``; InvalidState (409) if the
    operation may not start from that state."""
    step = transition(operation)
    if vm_state not in step.starts_from:
        raise InvalidState(
            f"cannot {operation} a VM that is {vm_state}; {operation} is allowed only when "
            f"the VM is {' or '.join(step.starts_from)}",
            details={"state": vm_state, "operation": operation,
                     "allowedStates": list(step.starts_from)},
        )
    return step


def final_state(operation: str, started_from: str, *, succeeded: bool) -> str:
    step = transition(operation)
    if succeeded:
        return step.on_success
    return step.on_failure or started_from


def _host_after(vm_state: str, host_uuid: str | None, state: str) -> str | None:
    """The host a VM in ``vm_state`` on ``host_uuid`` keeps when it moves to ``state``."""
    held, holds = holds_host(vm_state, host_uuid), holds_host(state, host_uuid)
    if held and holds:
        return host_uuid
    if holds:
        # Back from an operation that left it where it was (Destroying → Running) it holds its
        # host again; from a state that ran nowhere (Stopped → Starting) its host is stale.
        return host_uuid if vm_state in TRANSIENT_STATES else None
    # An operation in flight still needs to know where the VM is (Running → Destroying); a VM
    # that settles where it runs nowhere (Stopping → Stopped) leaves its host.
    return host_uuid if state in TRANSIENT_STATES else None


def _expected(vm: VmHold | VmInstance, expected: tuple[str, ...] | None) -> None:
    if expected is not None and vm.state not in expected:
        raise InvalidState(f"VM {vm.name} ({vm.uuid}) is {vm.state}, not "
                           f"{' or '.join(expected)}", details={"state": vm.state})


def change_state(session: Session, vm_uuid: str, state: str, *,
                 expected: tuple[str, ...] | None = None) -> str:
    """Set the VM's state (only from one of ``expected``, if given), moving its host's CPU
    and memory with it. Returns the state it left. InvalidState if it was not in an expected
    state, or changed while this ran."""
    if state not in VM_STATES:
        raise ValueError(f"{state!r} is not a VM state")
    vm = read_hold(session, vm_uuid)
    _expected(vm, expected)
    return _move(session, vm, state)


def _announce(session: Session, vm_uuid: str, host_uuid: str | None, previous: str,
              state: str) -> None:
    events.publish_after_commit(session, "vm.state.changed", {
        "vmUuid": vm_uuid, "hostUuid": host_uuid, "from": previous, "to": state,
        "by": "operation"})


def _move(session: Session, vm: VmHold, state: str) -> str:
    """Set the state of ``vm`` (as just read); the state it left."""
    vm_uuid, previous = vm.uuid, vm.state
    host_uuid = _host_after(previous, vm.host_uuid, state)
    if move_vm(session, vm, state=state, host_uuid=host_uuid) is not Move.DONE:
        raise InvalidState(f"VM {vm_uuid} changed state while it was being set to {state}; "
                           "retry", code="ConcurrentConflict")
    if state != previous:
        _announce(session, vm_uuid, host_uuid, previous, state)
    return previous


def begin_new(session: Session, vm_uuid: str, operation: str) -> str:
    """:func:`begin` for a VM this transaction is about to insert: the state to insert it
    with, as if it had been inserted Created and then begun (and that change is announced),
    without writing its row twice. The operation starts from Created; the VM holds no host
    yet, so no capacity moves."""
    step = check("Created", operation)
    if step.transient is None:
        return "Created"
    _announce(session, vm_uuid, None, "Created", step.transient)
    return step.transient


def begin(session: Session, vm_uuid: str, operation: str) -> str:
    """Check the operation may start and show its transient state. Returns the state it
    started from (keep it for :func:`finish`)."""
    vm = read_hold(session, vm_uuid)
    step = check(vm.state, operation)
    if step.transient is None:
        return vm.state
    return _move(session, vm, step.transient)


def finish(session: Session, vm_uuid: str, operation: str, *, started_from: str,
           succeeded: bool) -> str:
    """Set the state the operation ends in; returns it. A successful expunge deletes the VM's
    row (its volumes and NICs must be gone by then)."""
    state = final_state(operation, started_from, succeeded=succeeded)
    step = transition(operation)
    expected = (step.transient or started_from,)
    if state == EXPUNGED:
        vm = read_vm(session, vm_uuid)
        _expected(vm, expected)
        session.delete(vm)
        session.flush()
        return state
    change_state(session, vm_uuid, state, expected=expected)
    return state
