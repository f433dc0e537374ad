"""HTTP routes for incidents: parse, authorize, call the service, render."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.errors import NotFoundError, PreconditionRequiredError, UnprocessableError
from firewatch.http import deps
from firewatch.http.direct import DirectRoute
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.http.validation import Comment, Labels, LongText, Name, Note, Title
from firewatch.incidents import service
from firewatch.incidents.model import Category, Severity, Status, display_ref, parse_ref
from firewatch.incidents.store import ListFilter

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], route_class=DirectRoute)

# The pool comes from ``request`` (deps.app_pool) rather than a ``Depends(deps.pool)``:
# these are the hottest routes and each dependency is one more level FastAPI solves
# per request (see bench/README.md, "in-process CPU per request").

Reader = Annotated[Principal, require(Permission.INCIDENTS_READ)]
Writer = Annotated[Principal, require(Permission.INCIDENTS_WRITE)]

SeverityText = Annotated[str, Field(pattern=r"^(?i:sev)[1-4]$", examples=["SEV2"])]


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    severity: SeverityText
    category: Category = Category.OTHER
    description: LongText = ""
    service: Name | None = None
    team: Name | None = None
    owner: Name | None = None
    labels: Labels = Field(default_factory=dict)


class IncidentPatch(BaseModel):
    """Fields to change; omitted fields stay. ``null`` clears service, team or owner."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    severity: SeverityText | None = None
    category: Category | None = None
    description: LongText | None = None
    service: Name | None = None
    team: Name | None = None
    owner: Name | None = None
    labels: Labels | None = None
    version: int | None = Field(
        default=None, description="The version you read; an alternative to If-Match."
    )


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Status
    note: Note | None = None
    version: int | None = None


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Comment


class IncidentOut(BaseModel):
    id: str = Field(examples=["INC-42"])
    number: int
    title: str
    description: str
    severity: str
    category: Category
    status: Status
    service: str | None
    team: str | None
    owner: str | None
    labels: dict[str, str]
    version: int
    reopen_count: int
    created_by: str
    opened_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    next_cursor: str | None


class TimelineEntryOut(BaseModel):
    id: int
    incident_id: str
    at: datetime
    actor: str
    kind: str
    before: Any
    after: Any
    note: str | None


class TimelinePage(BaseModel):
    items: list[TimelineEntryOut]
    next_cursor: str | None


def incident_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["number"] = row["id"]
    out["id"] = display_ref(row["id"])
    out["severity"] = f"SEV{row['severity']}"
    return out


def _timeline_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["incident_id"] = display_ref(row["incident_id"])
    return out


def _etag(version: int) -> str:
    return f'"{version}"'


def _incident_response(row: asyncpg.Record, status_code: int = 200) -> Response:
    headers = {"ETag": _etag(row["version"])}
    if status_code == 201:
        headers["Location"] = f"/api/v1/incidents/{display_ref(row['id'])}"
    return JSONResponse(incident_json(row), status_code=status_code, headers=headers)


def _incident_id(ref: str) -> int:
    incident_id = parse_ref(ref)
    if incident_id is None:
        raise NotFoundError(f"{ref!r} is not an incident reference (expected INC-<n>)")
    return incident_id


def _if_match_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    try:
        return int(tag)
    except ValueError:
        raise UnprocessableError(
            "If-Match must carry an ETag this server issued", field="header.if-match"
        ) from None


def _expected_version(if_match: str | None, body_version: int | None) -> int | None:
    header = _if_match_version(if_match)
    if header is not None and body_version is not None and header != body_version:
        raise UnprocessableError(
            "If-Match and body version disagree", field=["header.if-match", "body.version"]
        )
    return header if header is not None else body_version


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentOut,
    summary="Open an incident",
)
async def create_incident(body: IncidentCreate, caller: Writer, request: Request) -> Response:
    row = await deps.app_creates(request).create(
        caller,
        service.NewIncident(
            title=body.title,
            severity=Severity.parse(body.severity).value,
            category=body.category.value,
            description=body.description,
            service=body.service,
            team=body.team,
            owner=body.owner,
            labels=body.labels,
        ),
    )
    return _incident_response(row, 201)


@router.get("/{ref}", response_model=IncidentOut, summary="Get one incident")
async def get_incident(ref: str, caller: Reader, request: Request) -> Response:
    return _incident_response(await service.get_incident(deps.app_pool(request), _incident_id(ref)))


@router.patch(
    "/{ref}",
    response_model=IncidentOut,
    summary="Change fields (needs If-Match or version: no lost updates)",
)
async def patch_incident(
    ref: str,
    body: IncidentPatch,
    caller: Writer,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    expected = _expected_version(if_match, body.version)
    if expected is None:
        raise PreconditionRequiredError(
            "send If-Match with the ETag you read (or a body 'version'), so concurrent "
            "edits cannot silently overwrite each other"
        )
    changes: dict[str, Any] = {}
    for name in body.model_fields_set - {"version"}:
        value = getattr(body, name)
        if value is None and name not in ("service", "team", "owner"):
            raise UnprocessableError(f"{name} cannot be null", field=f"body.{name}")
        if name == "severity":
            value = Severity.parse(value).value
        elif name == "category":
            value = value.value
        changes[name] = value
    row = await service.update_incident(
        deps.app_pool(request), caller, _incident_id(ref), changes, expected_version=expected
    )
    return _incident_response(row)


@router.post(
    "/{ref}/transitions",
    response_model=IncidentOut,
    summary="Move along the lifecycle (409 names the allowed next states)",
)
async def transition_incident(
    ref: str,
    body: TransitionIn,
    caller: Writer,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    row = await service.transition_incident(
        deps.app_pool(request),
        caller,
        _incident_id(ref),
        body.to,
        note=body.note,
        expected_version=_expected_version(if_match, body.version),
    )
    return _incident_response(row)


@router.post(
    "/{ref}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=TimelineEntryOut,
    summary="Add a comment to the timeline",
)
async def comment(ref: str, body: CommentIn, caller: Writer, request: Request) -> Response:
    row = await service.add_comment(deps.app_pool(request), caller, _incident_id(ref), body.body)
    return JSONResponse(_timeline_json(row), status_code=201)


@router.get("/{ref}/timeline", response_model=TimelinePage, summary="The incident's story")
async def timeline(
    ref: str,
    caller: Reader,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    after_id = decode_cursor(cursor) if cursor else 0
    pool = deps.app_pool(request)
    rows = await service.get_timeline(pool, _incident_id(ref), after_id=after_id, limit=limit)
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [_timeline_json(r) for r in rows], "next_cursor": nxt})


@router.get("", response_model=IncidentPage, summary="List incidents, newest first")
async def list_incidents(
    request: Request,
    caller: Reader,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    severity: Annotated[list[SeverityText] | None, Query()] = None,
    category: Annotated[list[Category] | None, Query()] = None,
    service_: Annotated[str | None, Query(alias="service", max_length=200)] = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    opened_after: datetime | None = None,
    opened_before: datetime | None = None,
    q: Annotated[str | None, Query(max_length=500, description="Full-text search")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    given = {"service": service_, "team": team, "owner": owner, "q": q}
    nul = [f"query.{k}" for k, v in given.items() if v is not None and "\x00" in v]
    if nul:
        raise UnprocessableError("query parameters must not contain NUL characters", field=nul)
    flt = ListFilter(
        status=[s.value for s in status_] if status_ else None,
        severity=[Severity.parse(s).value for s in severity] if severity else None,
        category=[c.value for c in category] if category else None,
        service=service_,
        team=team,
        owner=owner,
        opened_after=opened_after,
        opened_before=opened_before,
        q=q or None,
    )
    before_id = decode_cursor(cursor) if cursor else None
    pool = deps.app_pool(request)
    rows = await service.list_incidents(pool, flt, before_id=before_id, limit=limit)
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [incident_json(r) for r in rows], "next_cursor": nxt})
