"""The minimal FastAPI + asyncpg app: one INSERT ... RETURNING, one SELECT by id.

Written the way a small FastAPI service usually is: pydantic models in and out,
an asyncpg pool opened in the lifespan, no timeline, no auth, no error mapping.
Run: BENCH_DATABASE_URL=... uvicorn --factory bench.baselines.minimal:create_app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

COLUMNS = (
    "id, title, description, severity, category, status, service, team, owner, labels, "
    "version, reopen_count, created_by, opened_at, acknowledged_at, mitigated_at, "
    "resolved_at, closed_at, updated_at"
)


class IncidentIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    severity: str = Field(pattern=r"^(?i:sev)[1-4]$")
    category: str = "other"
    description: str = ""
    service: str | None = None
    team: str | None = None
    owner: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class IncidentOut(BaseModel):
    id: int
    title: str
    description: str
    severity: int
    category: str
    status: str
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


async def _init(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


def create_app() -> FastAPI:
    dsn = os.environ["BENCH_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10, init=_init)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/incidents", status_code=201, response_model=IncidentOut)
    async def create(body: IncidentIn, request: Request) -> Any:
        pool: asyncpg.Pool[asyncpg.Record] = request.app.state.pool
        row = await pool.fetchrow(
            "INSERT INTO incidents (title, description, severity, category, service, team,"
            " owner, labels, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            f" RETURNING {COLUMNS}",
            body.title,
            body.description,
            int(body.severity[3:]),
            body.category,
            body.service,
            body.team,
            body.owner,
            body.labels,
            "bench",
        )
        return dict(row) if row is not None else None

    @app.get("/incidents/{incident_id}", response_model=IncidentOut)
    async def get(incident_id: int, request: Request) -> Any:
        pool: asyncpg.Pool[asyncpg.Record] = request.app.state.pool
        row = await pool.fetchrow(f"SELECT {COLUMNS} FROM incidents WHERE id = $1", incident_id)
        if row is None:
            raise HTTPException(404, "not found")
        return dict(row)

    return app
