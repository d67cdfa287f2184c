"""Malformed and random requests to every route get a 4xx with an error code, never a 5xx,
and change nothing."""
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.api.registry import OPERATIONS

UUID = "0123456789abcdef0123456789abcdef"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)


def _field_names() -> list[str]:
    names = set()
    for op in OPERATIONS:
        if op.request is not None:
            names |= {f.alias or n for n, f in op.request.model_fields.items()}
    return sorted(names)


bodies = st.one_of(
    st.dictionaries(st.sampled_from(_field_names()), json_values, max_size=6),
    json_values,
)


def _path(op, segment: str) -> str:
    return re.sub(r"\{[^}]+\}", segment, op.path)


def _assert_client_error(reply) -> None:
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert reply.json()["error"]["code"], reply.text


def _row_counts(control_plane) -> dict:
    from sqlalchemy import func, select

    from chalicelib.db.base import Base

    with control_plane.db.session() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables if t.name not in ("sessions", "api_jobs")}


def test_malformed_bodies_on_every_route(api, control_plane):
    before = _row_counts(control_plane)
    for op in OPERATIONS:
        for raw in (b"{", b"[1, 2]", b"\xff\xfe", b'"text"', b"null", b"{}" * 3):
            for segment in (UUID, "not-a-uuid"):
                reply = api.request(op.method, _path(op, segment), content=raw,
                                    headers={"Content-Type": "application/json"})
                _assert_client_error(reply)
    assert _row_counts(control_plane) == before


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(index=st.integers(0, len(OPERATIONS) - 1), body=bodies,
       segment=st.sampled_from([UUID, "x", "%20", "0" * 32]))
def test_random_bodies_on_every_route(api, index, body, segment):
    op = OPERATIONS[index]
    reply = api.request(op.method, _path(op, segment), content=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})
    _assert_client_error(reply)
    if reply.status_code == 202:
        job = api.wait_job(reply.json()["jobUuid"])
        assert job["state"] == "Succeeded" or job["error"]["code"] != "InternalError", job
