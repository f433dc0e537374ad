"""The pure lifecycle rules, including property tests over random move sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firewatch.incidents.model import (
    TRANSITIONS,
    Lifecycle,
    Severity,
    Status,
    TransitionError,
    allowed_next,
    parse_ref,
    transition,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_acknowledge_then_resolve_stamps_each_time() -> None:
    s = Lifecycle(Status.OPEN, T0)
    s = transition(s, Status.ACKNOWLEDGED, T0 + timedelta(minutes=3))
    assert s.acknowledged_at == T0 + timedelta(minutes=3)
    s = transition(s, Status.RESOLVED, T0 + timedelta(minutes=30))
    assert s.resolved_at == T0 + timedelta(minutes=30)
    # resolution ends the impact, so a skipped mitigation is stamped with it
    assert s.mitigated_at == s.resolved_at
    s = transition(s, Status.CLOSED, T0 + timedelta(days=2))
    assert s.closed_at == T0 + timedelta(days=2)


def test_false_alarm_is_not_counted_as_acknowledged() -> None:
    s = transition(Lifecycle(Status.OPEN, T0), Status.RESOLVED, T0 + timedelta(minutes=1))
    assert s.status is Status.RESOLVED
    assert s.acknowledged_at is None


def test_reopen_clears_resolution_keeps_first_ack() -> None:
    s = Lifecycle(Status.OPEN, T0)
    s = transition(s, Status.INVESTIGATING, T0 + timedelta(minutes=1))
    s = transition(s, Status.RESOLVED, T0 + timedelta(minutes=5))
    s = transition(s, Status.OPEN, T0 + timedelta(minutes=9))
    assert s.status is Status.OPEN
    assert s.acknowledged_at == T0 + timedelta(minutes=1)
    assert (s.mitigated_at, s.resolved_at, s.closed_at) == (None, None, None)
    assert s.reopen_count == 1


def test_closed_is_final_and_error_names_allowed_states() -> None:
    s = transition(Lifecycle(Status.OPEN, T0), Status.RESOLVED, T0)
    s = transition(s, Status.CLOSED, T0)
    with pytest.raises(TransitionError) as info:
        transition(s, Status.OPEN, T0)
    assert info.value.allowed == []
    with pytest.raises(TransitionError, match="allowed next states: acknowledged, investigating"):
        transition(Lifecycle(Status.OPEN, T0), Status.CLOSED, T0)


def test_clock_going_backwards_never_makes_timestamps_go_backwards() -> None:
    s = transition(Lifecycle(Status.OPEN, T0), Status.ACKNOWLEDGED, T0 - timedelta(hours=1))
    assert s.acknowledged_at == T0


@given(
    st.lists(
        st.tuples(st.sampled_from(list(Status)), st.integers(min_value=-600, max_value=3600)),
        max_size=40,
    )
)
def test_random_sequences_keep_invariants(moves: list[tuple[Status, int]]) -> None:
    state = Lifecycle(Status.OPEN, T0)
    now = T0
    for target, step in moves:
        now = now + timedelta(seconds=step)
        if target not in TRANSITIONS[state.status]:
            with pytest.raises(TransitionError):
                transition(state, target, now)
            continue
        state = transition(state, target, now)
        assert state.status is target
        stamps = [
            t
            for t in (
                state.opened_at,
                state.acknowledged_at,
                state.mitigated_at,
                state.resolved_at,
                state.closed_at,
            )
            if t is not None
        ]
        assert stamps == sorted(stamps), "timestamps must be monotone in lifecycle order"
        if state.status in (Status.RESOLVED, Status.CLOSED):
            assert state.resolved_at is not None
            assert state.mitigated_at is not None
        if state.status is Status.CLOSED:
            assert state.closed_at is not None
        if state.status in (Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED):
            assert state.acknowledged_at is not None
            assert state.resolved_at is None
        if state.status is Status.MITIGATED:
            assert state.mitigated_at is not None


def test_every_state_reachable_and_allowed_next_is_ordered() -> None:
    seen = {Status.OPEN}
    frontier = [Status.OPEN]
    while frontier:
        for nxt in allowed_next(frontier.pop()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status)
    assert allowed_next(Status.RESOLVED) == [Status.OPEN, Status.CLOSED]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("INC-42", 42),
        ("inc-7", 7),
        ("42", 42),
        ("INC-0", None),
        ("INC-x", None),
        ("INC-99999999999999999999", None),
        ("9223372036854775808", None),
        ("", None),
    ],
)
def test_parse_ref(ref: str, expected: int | None) -> None:
    assert parse_ref(ref) == expected


def test_severity_parse() -> None:
    assert Severity.parse("sev1") is Severity.SEV1
    assert Severity.SEV3.label == "SEV3"
    with pytest.raises(ValueError, match="unknown severity"):
        Severity.parse("SEV5")
