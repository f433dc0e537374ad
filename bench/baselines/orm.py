"""The same minimal app in the style of Netflix Dispatch: SQLAlchemy ORM models, a
session per request (a dependency), add/commit/refresh, pydantic read models built
from ORM attributes. Async SQLAlchemy over asyncpg, so only the ORM layer differs
from bench/baselines/minimal.py.
Run: BENCH_DATABASE_URL=... uvicorn --factory bench.baselines.orm:create_app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, DateTime, Integer, SmallInteger, String, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String, server_default="")
    severity: Mapped[int] = mapped_column(SmallInteger)
    category: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String, server_default="open")
    service: Mapped[str | None] = mapped_column(String)
    team: Mapped[str | None] = mapped_column(String)
    owner: Mapped[str | None] = mapped_column(String)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    reopen_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_by: Mapped[str] = mapped_column(String)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mitigated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")


class IncidentCreate(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    severity: str = Field(pattern=r"^(?i:sev)[1-4]$")
    category: str = "other"
    description: str = ""
    service: str | None = None
    team: str | None = None
    owner: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class IncidentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


def _async_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, closed when the response is done (as in Dispatch)."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


def create_app() -> FastAPI:
    engine = create_async_engine(
        _async_url(os.environ["BENCH_DATABASE_URL"]), pool_size=10, max_overflow=0
    )
    sessions = async_sessionmaker(engine, expire_on_commit=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.sessions = sessions

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/incidents", status_code=201, response_model=IncidentRead)
    async def create(body: IncidentCreate, db: Db) -> Any:
        incident = Incident(
            **body.model_dump(exclude={"severity"}),
            severity=int(body.severity[3:]),
            created_by="bench",
        )
        db.add(incident)
        await db.commit()
        await db.refresh(incident)
        return incident

    @app.get("/incidents/{incident_id}", response_model=IncidentRead)
    async def get(incident_id: int, db: Db) -> Any:
        incident = (
            await db.execute(select(Incident).where(Incident.id == incident_id))
        ).scalar_one_or_none()
        if incident is None:
            raise HTTPException(404, "not found")
        return incident

    return app
