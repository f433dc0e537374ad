"""Notification destinations and the delivery record of every notification."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.errors import NotFoundError
from firewatch.http import deps
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.http.validation import Name, ShortName
from firewatch.incidents.model import Severity, display_ref, parse_ref
from firewatch.notifications import service
from firewatch.notifications.model import DestinationKind, EventKind
from firewatch.runtime.database import PgPool

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

Admin = Annotated[Principal, require(Permission.INTEGRATIONS_ADMIN)]
Reader = Annotated[Principal, require(Permission.INCIDENTS_READ)]
Pool = Annotated[PgPool, Depends(deps.pool)]
# bigint identity keys: a number beyond them is a 422, not a query PostgreSQL refuses
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortName
    kind: DestinationKind
    url: Annotated[str, Field(max_length=2048)]
    min_severity: Annotated[str, Field(pattern=r"^(?i:sev)[1-4]$")] = "SEV4"
    services: Annotated[list[Name], Field(max_length=100)] | None = None
    event_kinds: Annotated[list[EventKind], Field(max_length=20)] | None = None
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if any(ord(c) < 33 for c in value):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            _ = parts.port  # a number in 0..65535, or ValueError
            httpx.URL(value)  # what delivery will send to (it refuses e.g. port 0x50)
        except (ValueError, httpx.InvalidURL):
            raise ValueError("must be a valid http(s) URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value


def _redacted_url(url: str) -> str:
    """Scheme and host only: the path of a Slack incoming webhook is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def _destination_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["url"] = _redacted_url(row["url"])
    out["min_severity"] = f"SEV{row['min_severity']}"
    return out


def _notification_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["incident_id"] = display_ref(row["incident_id"]) if row["incident_id"] else None
    return out


@router.post(
    "/destinations",
    status_code=status.HTTP_201_CREATED,
    summary="Add a destination (a webhook's signing secret is shown once, here)",
)
async def create_destination(body: DestinationIn, caller: Admin, pool: Pool) -> Response:
    row, secret = await service.create_destination(
        pool,
        caller,
        service.NewDestination(
            name=body.name,
            kind=body.kind,
            url=body.url,
            min_severity=Severity.parse(body.min_severity).value,
            services=body.services,
            event_kinds=[k.value for k in body.event_kinds] if body.event_kinds else None,
            enabled=body.enabled,
        ),
    )
    out = _destination_json(row)
    if secret is not None:
        out["secret"] = secret
    return JSONResponse(out, status_code=201)


@router.get("/destinations", summary="List destinations (URLs redacted)")
async def list_destinations(caller: Admin, pool: Pool) -> Response:
    rows = await service.list_destinations(pool)
    return JSONResponse({"items": [_destination_json(r) for r in rows]})


@router.delete("/destinations/{destination_id}", status_code=204, summary="Remove a destination")
async def delete_destination(destination_id: RowId, caller: Admin, pool: Pool) -> Response:
    await service.delete_destination(pool, destination_id)
    return Response(status_code=204)


@router.get("", summary="Notifications, newest first, with their delivery state")
async def list_notifications(
    caller: Reader,
    pool: Pool,
    incident: str | None = None,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(pending|delivered|dead)$")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    incident_id = None
    if incident is not None:
        incident_id = parse_ref(incident)
        if incident_id is None:
            raise NotFoundError(f"{incident!r} is not an incident reference (expected INC-<n>)")
    before_id = decode_cursor(cursor) if cursor else None
    rows = await service.list_notifications(
        pool, incident_id=incident_id, status=status_, before_id=before_id, limit=limit
    )
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [_notification_json(r) for r in rows], "next_cursor": nxt})


@router.get("/{notification_id}", summary="One notification with every delivery attempt")
async def get_notification(notification_id: RowId, caller: Reader, pool: Pool) -> Response:
    row, attempts = await service.get_notification(pool, notification_id)
    out = _notification_json(row)
    out["attempts_log"] = [dict(a) for a in attempts]
    return JSONResponse(out)


@router.post(
    "/{notification_id}/retry", status_code=202, summary="Send a dead-lettered notification again"
)
async def retry(notification_id: RowId, caller: Admin, pool: Pool) -> Response:
    await service.retry_notification(pool, notification_id)
    return JSONResponse({"status": "pending"}, status_code=202)
