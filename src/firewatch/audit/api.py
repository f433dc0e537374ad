"""HTTP routes for reading the audit log (there is no route that changes it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import Response

from firewatch.audit import store
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.http import deps
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.runtime.database import PgPool

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Reader = Annotated[Principal, require(Permission.AUDIT_READ)]
Pool = Annotated[PgPool, Depends(deps.pool)]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    target: str | None
    before_digest: str | None
    after_digest: str | None
    client: str | None
    outcome: str
    details: dict[str, Any]
    seq: int | None
    hash: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


def _entry_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["hash"] = bytes(row["hash"]).hex() if row["hash"] is not None else None
    return out


@router.get("", response_model=AuditPage, summary="Audit entries, newest first")
async def list_entries(
    caller: Reader,
    pool: Pool,
    action: Annotated[str | None, Query(max_length=100)] = None,
    target: Annotated[str | None, Query(max_length=300)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    before = decode_cursor(cursor) if cursor else None
    for value in (action, target, actor):
        if value is not None and "\x00" in value:
            return JSONResponse({"items": [], "next_cursor": None})
    async with pool.acquire() as conn:
        rows = await store.list_entries(
            conn, before_id=before, limit=limit, action=action, target=target, actor=actor
        )
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [_entry_json(r) for r in rows], "next_cursor": nxt})
