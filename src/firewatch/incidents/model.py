"""The incident domain: severities, categories and the lifecycle state machine.

Pure Python on purpose: no I/O, so the rules are unit- and property-tested without
servers, and every entry point (API, CLI, alert ingestion) obeys the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, Protocol


class Severity(IntEnum):
    SEV1 = 1
    SEV2 = 2
    SEV3 = 3
    SEV4 = 4

    @property
    def label(self) -> str:
        return f"SEV{self.value}"

    @classmethod
    def parse(cls, text: str) -> Severity:
        match = re.fullmatch(r"(?i)sev([1-4])", text.strip())
        if match is None:
            raise ValueError(f"unknown severity {text!r}; expected SEV1..SEV4")
        return cls(int(match.group(1)))


class Category(StrEnum):
    MODEL_DEGRADATION = "model_degradation"
    DATA_QUALITY = "data_quality"
    DATA_DRIFT = "data_drift"
    PIPELINE_FAILURE = "pipeline_failure"
    LATENCY = "latency"
    AVAILABILITY = "availability"
    COST_SPIKE = "cost_spike"
    SECURITY = "security"
    OTHER = "other"


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"


# The allowed moves. Forward shortcuts are allowed (a false alarm goes straight from
# open to resolved); the only ways back are a regression after mitigation
# (mitigated -> investigating) and a reopen (resolved -> open). Closed is final: the
# postmortem is written against a fixed record.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset(
        {Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED, Status.RESOLVED}
    ),
    Status.ACKNOWLEDGED: frozenset({Status.INVESTIGATING, Status.MITIGATED, Status.RESOLVED}),
    Status.INVESTIGATING: frozenset({Status.MITIGATED, Status.RESOLVED}),
    Status.MITIGATED: frozenset({Status.INVESTIGATING, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.CLOSED, Status.OPEN}),
    Status.CLOSED: frozenset(),
}

ACTIVE_STATUSES = frozenset(
    {Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED}
)


class TransitionError(Exception):
    """A move the lifecycle does not allow; names the moves that are allowed."""

    def __init__(self, current: Status, target: Status) -> None:
        self.current = current
        self.target = target
        self.allowed = sorted(TRANSITIONS[current], key=list(Status).index)
        allowed = ", ".join(s.value for s in self.allowed) or "none (closed is final)"
        super().__init__(
            f"cannot move an incident from {current.value} to {target.value}; "
            f"allowed next states: {allowed}"
        )


class Row(Protocol):
    """What the domain reads from an incident row: keyed access to its columns."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The status and the timestamps that MTTA/MTTR are computed from."""

    status: Status
    opened_at: datetime
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0

    @classmethod
    def of(cls, row: Row) -> Lifecycle:
        """From an incident row (a database record or a dict with its columns)."""
        return cls(
            status=Status(row["status"]),
            opened_at=row["opened_at"],
            acknowledged_at=row["acknowledged_at"],
            mitigated_at=row["mitigated_at"],
            resolved_at=row["resolved_at"],
            closed_at=row["closed_at"],
            reopen_count=row["reopen_count"],
        )


def allowed_next(status: Status) -> list[Status]:
    return sorted(TRANSITIONS[status], key=list(Status).index)


def transition(state: Lifecycle, target: Status, now: datetime) -> Lifecycle:
    """Apply one move, stamping the timestamps it implies.

    Rules (documented in docs/metrics.md once analytics lands):
    - acknowledged_at is the first time a responder engaged: set on the first move
      to acknowledged, investigating or mitigated. Resolving straight from open does
      not set it, so unacknowledged incidents stay visible as such.
    - mitigated_at is set on mitigation, or on resolution when it was skipped
      (resolution ends the impact).
    - resolved_at / closed_at are set on those moves.
    - a reopen clears mitigated/resolved/closed (the impact is back) but keeps the
      first acknowledgement, and counts the reopen.
    Timestamps never go backwards: ``now`` earlier than the last stamp is clamped.
    """
    if target not in TRANSITIONS[state.status]:
        raise TransitionError(state.status, target)
    latest = max(
        t
        for t in (
            state.opened_at,
            state.acknowledged_at,
            state.mitigated_at,
            state.resolved_at,
            state.closed_at,
        )
        if t is not None
    )
    at = max(now, latest)
    ack, mit, res, clo = (
        state.acknowledged_at,
        state.mitigated_at,
        state.resolved_at,
        state.closed_at,
    )
    reopens = state.reopen_count
    if target in (Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED) and ack is None:
        ack = at
    if target is Status.MITIGATED:
        mit = at
    elif target is Status.INVESTIGATING:
        mit = None  # a regression after mitigation: impact is back
    if target is Status.RESOLVED:
        res = at
        if mit is None:
            mit = at
    if target is Status.CLOSED:
        clo = at
    if target is Status.OPEN:
        mit = res = clo = None
        reopens += 1
    return Lifecycle(target, state.opened_at, ack, mit, res, clo, reopens)


_REF = re.compile(r"(?i)(?:INC-)?([1-9][0-9]{0,17})")


def parse_ref(ref: str) -> int | None:
    """``INC-42`` or ``42`` to 42; anything else (or out of bigint range) to None."""
    match = _REF.fullmatch(ref.strip())
    if match is None:
        return None
    value = int(match.group(1))
    return value if value < 2**63 else None


def display_ref(incident_id: int) -> str:
    return f"INC-{incident_id}"
