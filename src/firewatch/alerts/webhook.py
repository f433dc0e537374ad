"""The generic signed webhook: PagerDuty Events v2 shaped events (pure parsing).

Senders sign ``"<unix timestamp>." + body`` with HMAC-SHA256 and the integration's
secret, and send ``X-Firewatch-Timestamp`` and ``X-Firewatch-Signature: v1=<hex>``.
Requests outside the time window or seen before are refused (see api.py).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from firewatch.alerts.alertmanager import (
    AnnotationValue,
    LabelValue,
    PayloadError,
    Url,
    body_errors,
)
from firewatch.alerts.grouping import IncomingAlert, IncomingGroup

DedupKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ShortText = Annotated[str, StringConstraints(max_length=255)]


class EventPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: Annotated[AnnotationValue, StringConstraints(min_length=1, max_length=1024)]
    source: Annotated[LabelValue, StringConstraints(min_length=1, max_length=255)]
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: AwareDatetime | None = None
    component: Annotated[LabelValue, StringConstraints(max_length=255)] | None = None
    group: Annotated[LabelValue, StringConstraints(max_length=255)] | None = None
    class_: Annotated[LabelValue, StringConstraints(max_length=255)] | None = Field(
        default=None, alias="class"
    )
    custom_details: dict[str, Any] | None = None


class Link(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    href: Url
    text: ShortText | None = None


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: DedupKey | None = None
    payload: EventPayload | None = None
    links: Annotated[list[Link], Field(max_length=20)] = Field(default_factory=list)
    client_url: Url | None = None


def parse(body: bytes) -> Event:
    try:
        event = Event.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if any(e["type"] in ("json_invalid", "json_type") for e in errors):
            raise PayloadError(400, "the request body is not valid JSON") from None
        raise PayloadError(
            422,
            f"{exc.error_count()} field(s) of the event failed validation",
            body_errors(exc),
        ) from None
    if event.event_action == "trigger" and event.payload is None:
        raise PayloadError(
            422, "a trigger event needs a payload (summary, source, severity)", field="body.payload"
        )
    if event.event_action != "trigger" and event.dedup_key is None:
        raise PayloadError(
            422,
            f"an {event.event_action} event needs the dedup_key it refers to",
            field="body.dedup_key",
        )
    return event


def new_dedup_key() -> str:
    return secrets.token_hex(16)


def source_of(integration: str) -> str:
    return f"webhook:{integration}"


def to_group(integration: str, event: Event, dedup_key: str) -> IncomingGroup:
    """A trigger or resolve as a one-alert group keyed by its dedup_key."""
    now = datetime.now(UTC)
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    payload = event.payload
    if payload is not None:
        labels["alertname"] = payload.class_ or "webhook"
        labels["severity"] = payload.severity
        labels["source"] = payload.source
        for key, value in (("component", payload.component), ("group", payload.group)):
            if value:
                labels[key] = value
        details = payload.custom_details or {}
        for key in ("service", "team", "category"):
            value = details.get(key)
            if isinstance(value, str) and value and len(value) <= 200 and value.isprintable():
                labels[key] = value
        if "service" not in labels and payload.component:
            labels["service"] = payload.component
        annotations["summary"] = payload.summary
        if details:
            annotations["custom_details"] = orjson.dumps(details).decode()[:32768]
    starts = payload.timestamp if payload is not None and payload.timestamp else now
    status = "resolved" if event.event_action == "resolve" else "firing"
    alert = IncomingAlert(
        fingerprint=dedup_key,
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts,
        ends_at=now if status == "resolved" else None,
        generator_url=event.client_url or None,
        runbook_url=event.links[0].href if event.links else None,
    )
    return IncomingGroup(
        source=source_of(integration),
        group_key=dedup_key,
        group_labels={},
        common_labels=labels,
        common_annotations={"summary": annotations["summary"]} if "summary" in annotations else {},
        alerts=[alert],
    )
