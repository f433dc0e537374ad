"""Pure rules that turn a group of alerts into incident fields and lifecycle moves.

No I/O: the same rules serve Alertmanager groups, webhook events and detector
anomalies, and are unit-tested without servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from firewatch.incidents.model import Category, Lifecycle, Status, transition

DEFAULT_SEVERITY_MAP: Mapping[str, int] = {
    "critical": 1,
    "error": 2,
    "high": 2,
    "warning": 3,
    "info": 4,
}
MAX_TITLE = 300

_CATEGORIES = frozenset(c.value for c in Category)
_INCIDENT_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class MappingRules:
    """How labels map to incident fields (configured by FIREWATCH_ALERT_* settings)."""

    severity_label: str = "severity"
    severity_map: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_severity: int = 3
    category_label: str = "category"
    category_map: Mapping[str, str] = field(default_factory=dict)
    service_label: str = "service"
    team_label: str = "team"


def severity_of(labels: Mapping[str, str], rules: MappingRules) -> int:
    value = labels.get(rules.severity_label)
    if value is None:
        return rules.default_severity
    return rules.severity_map.get(value.strip().lower(), rules.default_severity)


def group_severity(label_sets: Iterable[Mapping[str, str]], rules: MappingRules) -> int:
    """The most severe (lowest SEV number) of the given alerts."""
    return min(
        (severity_of(labels, rules) for labels in label_sets), default=rules.default_severity
    )


def category_of(candidates: Sequence[Mapping[str, str]], rules: MappingRules) -> str:
    """A valid ``category`` label wins; else the alertname mapping; else ``other``."""
    for labels in candidates:
        value = labels.get(rules.category_label, "").strip().lower()
        if value in _CATEGORIES:
            return value
    for labels in candidates:
        name = labels.get("alertname")
        if name is not None and name in rules.category_map:
            return rules.category_map[name]
    return Category.OTHER.value


def _first(candidates: Sequence[Mapping[str, str]], key: str) -> str | None:
    for labels in candidates:
        value = labels.get(key, "").strip()
        if value and not _CONTROL.search(value):
            return value[:200]
    return None


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _CONTROL.sub(" ", line).strip()


def title_of(
    group_labels: Mapping[str, str],
    common_annotations: Mapping[str, str],
    first_labels: Mapping[str, str],
) -> str:
    """The group's summary annotation, else ``alertname (k=v, ...)`` from its labels."""
    for key in ("summary", "title"):
        text = _one_line(common_annotations.get(key, ""))
        if text:
            return text[:MAX_TITLE]
    labels = group_labels or first_labels
    name = labels.get("alertname") or first_labels.get("alertname") or "alert"
    rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    text = _one_line(f"{name} ({rest})" if rest else name) or "alert"
    return text[:MAX_TITLE]


def incident_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The subset of labels that fit an incident's label rules (64 keys, 1 kB values)."""
    out: dict[str, str] = {}
    for key in sorted(labels):
        value = labels[key]
        if _INCIDENT_LABEL_KEY.match(key) and len(value) <= 1024 and "\x00" not in value:
            out[key] = value
        if len(out) == 64:
            break
    return out


@dataclass(frozen=True, slots=True)
class IncidentFields:
    title: str
    severity: int
    category: str
    service: str | None
    team: str | None
    labels: dict[str, str]
    description: str = ""


def incident_fields(
    *,
    group_labels: Mapping[str, str],
    common_labels: Mapping[str, str],
    common_annotations: Mapping[str, str],
    alerts: Sequence[tuple[str, Mapping[str, str]]],
    rules: MappingRules,
) -> IncidentFields:
    """Fields for the incident of a group; ``alerts`` are (status, labels) pairs."""
    firing = [labels for status, labels in alerts if status == "firing"]
    all_labels = [labels for _, labels in alerts]
    candidates: list[Mapping[str, str]] = [common_labels, *all_labels]
    description = common_annotations.get("description", "")
    return IncidentFields(
        title=title_of(group_labels, common_annotations, all_labels[0] if all_labels else {}),
        severity=group_severity(firing or all_labels, rules),
        category=category_of(candidates, rules),
        service=_first(candidates, rules.service_label),
        team=_first(candidates, rules.team_label),
        labels=incident_labels(group_labels or common_labels),
        description=description.replace("\x00", "")[:20000],
    )


class AlertChange(StrEnum):
    """Timeline kinds for alert changes within an incident."""

    JOINED = "alerts_joined"
    RESOLVED = "alerts_resolved"
    REFIRED = "alerts_refired"


def classify(previous: str | None, current: str) -> AlertChange | None:
    """What a delivery did to one alert; None when its status did not change."""
    if previous is None:
        return AlertChange.JOINED
    if previous == "firing" and current == "resolved":
        return AlertChange.RESOLVED
    if previous == "resolved" and current == "firing":
        return AlertChange.REFIRED
    return None


def follow_alerts(
    status: Status, *, firing: int, new_firing: bool, auto_resolve: bool
) -> Status | None:
    """The move an incident makes because of its alerts, if any.

    - every alert resolved: an active incident is mitigated (or resolved when
      ``auto_resolve``); a mitigated one is resolved when ``auto_resolve``.
    - an alert fires again (or a new one fires) on a mitigated incident: the impact
      is back, so it regresses to investigating.
    Responder-driven states are otherwise left alone.
    """
    if firing == 0:
        if status in (Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING):
            return Status.RESOLVED if auto_resolve else Status.MITIGATED
        if status is Status.MITIGATED and auto_resolve:
            return Status.RESOLVED
        return None
    if status is Status.MITIGATED and new_firing:
        return Status.INVESTIGATING
    return None


def system_transition(state: Lifecycle, target: Status, now: datetime) -> Lifecycle:
    """A move made by firewatch itself (alerts), not by a responder.

    The lifecycle rules stamp ``acknowledged_at`` on the first move to mitigated or
    investigating because a person engaged; alerts resolving is not a person, so the
    acknowledgement stays as it was and MTTA keeps counting human response only.
    """
    moved = transition(state, target, now)
    return replace(moved, acknowledged_at=state.acknowledged_at)


def should_reopen(resolved_at: datetime | None, now: datetime, window_seconds: float) -> bool:
    """Reopen a resolved incident when it was resolved less than the window ago."""
    if resolved_at is None or window_seconds <= 0:
        return False
    return (now - resolved_at).total_seconds() < window_seconds


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str | None
    runbook_url: str | None


@dataclass(frozen=True, slots=True)
class IncomingGroup:
    source: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    alerts: Sequence[IncomingAlert]
