"""Pure rules of notification delivery: event kinds, signing, backoff, message bodies."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from firewatch.incidents.model import Status

SIGNATURE_VERSION = "v1"


class EventKind(StrEnum):
    OPENED = "incident.opened"
    REOPENED = "incident.reopened"
    ACKNOWLEDGED = "incident.acknowledged"
    INVESTIGATING = "incident.investigating"
    MITIGATED = "incident.mitigated"
    RESOLVED = "incident.resolved"
    CLOSED = "incident.closed"
    REGRESSED = "incident.regressed"
    ESCALATED = "incident.escalated"
    UPDATED = "incident.updated"
    COMMENTED = "incident.commented"


_MOVES = {
    Status.OPEN: EventKind.REOPENED,  # the only way into open is a reopen
    Status.ACKNOWLEDGED: EventKind.ACKNOWLEDGED,
    Status.INVESTIGATING: EventKind.INVESTIGATING,
    Status.MITIGATED: EventKind.MITIGATED,
    Status.RESOLVED: EventKind.RESOLVED,
    Status.CLOSED: EventKind.CLOSED,
}


def transition_event(current: Status, target: Status) -> EventKind:
    """The event of a lifecycle move; back from mitigated to investigating is a regression."""
    if current is Status.MITIGATED and target is Status.INVESTIGATING:
        return EventKind.REGRESSED
    return _MOVES[target]


def fields_event(before: Mapping[str, Any], after: Mapping[str, Any]) -> EventKind:
    """A field edit that raises the severity (SEV3 -> SEV2) is an escalation."""
    if "severity" in after and after["severity"] < before["severity"]:
        return EventKind.ESCALATED
    return EventKind.UPDATED


class DestinationKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` (same scheme both ways)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    """Constant-time check of a ``v1=...`` header (several, comma-separated, allowed)."""
    expected = signature(secret, timestamp, body)
    return any(
        hmac.compare_digest(expected.encode(), candidate.strip().encode())
        for candidate in header.split(",")
    )


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5..1.0.

    The jitter spreads retries of many notifications that failed together (one
    receiver down) instead of retrying them in lockstep.
    """
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    factor: float = 0.5 + (rng or random).random() / 2
    return float(delay * factor)


def is_retryable(status_code: int | None) -> bool:
    """Network errors, timeouts, 408, 425, 429 and 5xx are retried; other 4xx are final."""
    if status_code is None:
        return True
    return status_code in (408, 425, 429) or status_code >= 500


def matches(
    *,
    min_severity: int,
    services: list[str] | None,
    event_kinds: list[str] | None,
    severity: int,
    service: str | None,
    event_kind: str,
) -> bool:
    """A destination's filter (mirrors the SQL in store.enqueue, which is what runs)."""
    if severity > min_severity:
        return False
    if services is not None and service not in services:
        return False
    return event_kinds is None or event_kind in event_kinds


_SLACK_EMOJI = {
    1: ":rotating_light:",
    2: ":red_circle:",
    3: ":large_orange_circle:",
    4: ":information_source:",
}


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body (``text`` plus a section block)."""
    inc = payload["incident"]
    verb = str(payload["event"]).removeprefix("incident.")
    where = ", ".join(f"{k}: {inc[k]}" for k in ("service", "team") if inc.get(k))
    emoji = _SLACK_EMOJI.get(inc["severity_level"], "")
    text = f"{emoji} [{inc['severity']}] {inc['id']} {verb}: {inc['title']}".strip()
    if where:
        text += f" ({where})"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"status: {inc['status']} · category: {inc['category']}",
                    }
                ],
            },
        ],
    }
