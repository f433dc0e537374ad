"""The Alertmanager webhook payload (version 4), validated at the edge.

Alertmanager adds fields over time (``truncatedAlerts``, ``notification_reason``,
``routeLabels``...), so unknown fields are ignored, never refused: a 4xx makes
Alertmanager drop the notification for good. What we do refuse (422) is what we
could not store faithfully: wrong types, a version we do not read, NUL and other
control characters in labels, and oversized values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from firewatch.errors import field_errors

SUPPORTED_VERSION = "4"
MAX_LABEL_VALUE = 4096
MAX_ANNOTATION_VALUE = 32768
MAX_LABELS = 128

# Label values are one line of text; annotations may hold newlines and tabs.
_LABEL_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_ANNOTATION_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _label_text(value: str) -> str:
    if _LABEL_FORBIDDEN.search(value):
        raise ValueError("must not contain control characters")
    return value


def _annotation_text(value: str) -> str:
    if _ANNOTATION_FORBIDDEN.search(value):
        raise ValueError("must not contain NUL or control characters (other than tab/newline)")
    return value


LabelName = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_label_text)
]
LabelValue = Annotated[
    str, StringConstraints(max_length=MAX_LABEL_VALUE), AfterValidator(_label_text)
]
AnnotationValue = Annotated[
    str, StringConstraints(max_length=MAX_ANNOTATION_VALUE), AfterValidator(_annotation_text)
]
LabelSet = Annotated[dict[LabelName, LabelValue], Field(max_length=MAX_LABELS)]
AnnotationSet = Annotated[dict[LabelName, AnnotationValue], Field(max_length=MAX_LABELS)]
Url = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_label_text)]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: AnnotationSet = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt", strict=True)
    raw_ends_at: AwareDatetime | None = Field(default=None, alias="endsAt", strict=True)
    generator_url: Url = Field(default="", alias="generatorURL")
    fingerprint: Fingerprint

    @property
    def ends_at(self) -> datetime | None:
        """None for Alertmanager's zero time (0001-01-01): the alert has no end yet."""
        if self.raw_ends_at is None or self.raw_ends_at.year <= 1:
            return None
        return self.raw_ends_at.astimezone(UTC)


class Notification(BaseModel):
    """One webhook call: a group of alerts that share a ``groupKey``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    group_key: Annotated[str, StringConstraints(min_length=1, max_length=8192)] = Field(
        alias="groupKey"
    )
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, StringConstraints(max_length=1024)] = ""
    group_labels: LabelSet = Field(default_factory=dict, alias="groupLabels")
    common_labels: LabelSet = Field(default_factory=dict, alias="commonLabels")
    common_annotations: AnnotationSet = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Url = Field(default="", alias="externalURL")
    alerts: Annotated[list[Alert], Field(min_length=1)]
    truncated_alerts: Annotated[int, Field(ge=0, alias="truncatedAlerts")] = 0


class PayloadError(Exception):
    """The body is not an Alertmanager v4 payload we can store; ``status`` is 400 or 422."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        field: str | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        if errors is None and field is not None:  # one location, as body_errors names them
            errors = field_errors(detail, field)
        self.errors = errors or []


MAX_REPORTED_ERRORS = 20


def body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """``errors`` of a 422 for a body validated by hand (not by FastAPI): located under
    ``body``, as a request validation 422 locates them (``body.alerts.0.labels``).
    Never the rejected input: it may be huge, or a secret someone put in a label."""
    out = []
    for err in exc.errors(include_input=False, include_url=False)[:MAX_REPORTED_ERRORS]:
        loc = ["body", *(str(p) for p in err["loc"])]
        out.append({"loc": loc, "field": ".".join(loc), "type": err["type"], "msg": err["msg"]})
    return out


def parse(body: bytes, *, max_alerts: int) -> Notification:
    """Validate a raw body; raise :class:`PayloadError` with a clear reason otherwise."""
    try:
        payload = Notification.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if any(e["type"] in ("json_invalid", "json_type") for e in errors):
            raise PayloadError(400, "the request body is not valid JSON") from None
        if errors and errors[0]["type"] == "model_type":
            raise PayloadError(422, "the body must be a JSON object", field="body") from None
        raise PayloadError(
            422,
            f"{exc.error_count()} field(s) of the Alertmanager payload failed validation",
            body_errors(exc),
        ) from None
    if payload.version != SUPPORTED_VERSION:
        raise PayloadError(
            422,
            f"unsupported Alertmanager webhook version; firewatch reads version "
            f"{SUPPORTED_VERSION}",
            field="body.version",
        )
    if len(payload.alerts) > max_alerts:
        raise PayloadError(
            422,
            f"{len(payload.alerts)} alerts in one notification; at most {max_alerts} are "
            f"accepted (set max_alerts: {max_alerts} in Alertmanager's webhook_config)",
            field="body.alerts",
        )
    return payload
