"""HTTP routes for analytics: JSON for programs, CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from firewatch.analytics.windows import DIMENSIONS, Scope, Window, parse_window
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.errors import UnprocessableError
from firewatch.http import deps
from firewatch.http.responses import JSONResponse
from firewatch.incidents.model import Category, Severity
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Caller = Annotated[Principal, require(Permission.ANALYTICS_READ)]
Pool = Annotated[PgPool, Depends(deps.pool)]
Config = Annotated[Settings, Depends(deps.settings)]


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class Dimension(StrEnum):
    SEVERITY = "severity"
    CATEGORY = "category"
    SERVICE = "service"
    TEAM = "team"


assert tuple(d.value for d in Dimension) == DIMENSIONS


def _window(window: str | None, start: datetime | None, end: datetime | None) -> Window:
    now = datetime.now(UTC)
    if start is not None or end is not None:
        if window is not None:
            raise UnprocessableError(
                "give either window or from/to, not both",
                field=["query.window", "query.from", "query.to"],
            )
        if start is None or end is None:
            raise UnprocessableError(
                "a custom range needs both from and to",
                field="query.from" if start is None else "query.to",
            )
        if start.tzinfo is None or end.tzinfo is None:
            raise UnprocessableError(
                "from and to need a UTC offset (RFC 3339, e.g. ...Z)",
                field=[f"query.{k}" for k, v in (("from", start), ("to", end)) if v.tzinfo is None],
            )
        if end <= start:
            raise UnprocessableError("to must be after from", field=["query.from", "query.to"])
        return Window(start.astimezone(UTC), end.astimezone(UTC))
    try:
        return parse_window(window or "30d", now)
    except ValueError as exc:
        raise UnprocessableError(str(exc), field="query.window") from None


class Filters:
    """The query parameters every analytics route shares."""

    def __init__(
        self,
        window: Annotated[
            str | None, Query(max_length=10, description="7d, 30d, 12h ... (default 30d)")
        ] = None,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        service_: Annotated[str | None, Query(alias="service", max_length=200)] = None,
        team: Annotated[str | None, Query(max_length=200)] = None,
        category: Category | None = None,
        severity: Annotated[str | None, Query(pattern=r"^(?i:sev)[1-4]$")] = None,
    ) -> None:
        given = {"service": service_, "team": team}
        nul = [f"query.{k}" for k, v in given.items() if v is not None and "\x00" in v]
        if nul:
            raise UnprocessableError("query parameters must not contain NUL characters", field=nul)
        self.window = _window(window, start, end)
        self.scope = Scope(
            service=service_,
            team=team,
            category=category.value if category else None,
            severity=Severity.parse(severity).value if severity else None,
        )


Params = Annotated[Filters, Depends()]


async def _summary(pool: PgPool, settings: Settings, params: Filters) -> dict[str, Any]:
    # pandas is imported on the first analytics request, not at worker start.
    from firewatch.analytics import service

    return await service.summary(pool, settings, params.window, params.scope)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, datetime):
            out[prefix + key] = value.isoformat().replace("+00:00", "Z")
        else:
            out[prefix + key] = value
    return out


# format=csv answers text/csv: described too, so a client expects it
TABLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}


def _table(rows: list[dict[str, Any]], fmt: Format, name: str, window: Window) -> Response:
    if fmt is Format.JSON:
        return JSONResponse({"window": {"from": window.start, "to": window.end}, "items": rows})
    flat = [_flatten(r) for r in rows]
    buffer = io.StringIO()
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
    stamp = window.end.strftime("%Y%m%dT%H%M%SZ")
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="firewatch-{name}-{stamp}.csv"'},
    )


@router.get("/summary", summary="MTTA, time to mitigate, MTTR, trends, repeats and SLOs")
async def summary(params: Params, caller: Caller, pool: Pool, settings: Config) -> Response:
    data = await _summary(pool, settings, params)
    data["definitions"] = "docs/metrics.md"
    return JSONResponse(data)


@router.get(
    "/breakdown",
    summary="MTTA/MTTR per severity, category, service or team",
    responses=TABLE_RESPONSES,
)
async def breakdown(
    params: Params,
    caller: Caller,
    pool: Pool,
    settings: Config,
    by: Dimension = Dimension.SEVERITY,
    format: Format = Format.JSON,
) -> Response:
    data = await _summary(pool, settings, params)
    return _table(data["by"][by.value], format, f"by-{by.value}", params.window)


@router.get(
    "/weekly",
    summary="Weekly trend (Monday-based UTC weeks)",
    responses=TABLE_RESPONSES,
)
async def weekly(
    params: Params,
    caller: Caller,
    pool: Pool,
    settings: Config,
    format: Format = Format.JSON,
) -> Response:
    data = await _summary(pool, settings, params)
    return _table(data["weekly"], format, "weekly", params.window)


@router.get(
    "/slo",
    summary="SLO breaches per severity against the configured targets",
    responses=TABLE_RESPONSES,
)
async def slo(
    params: Params,
    caller: Caller,
    pool: Pool,
    settings: Config,
    format: Format = Format.JSON,
) -> Response:
    data = await _summary(pool, settings, params)
    return _table(data["slo"], format, "slo", params.window)
