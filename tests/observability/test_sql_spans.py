"""PostgreSQL statements get CLIENT spans from the pool's connection class, on a real
PostgreSQL, only inside a sampled span (tracing.sql_span, runtime/database.py)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from firewatch.observability import tracing
from firewatch.observability.spans import LightTracer
from firewatch.runtime.database import PgPool, create_pool


@pytest.fixture
def provider(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """Tracing on, as configure() leaves it, with spans kept in memory."""
    memory = InMemorySpanExporter()
    sdk = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    sdk.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_provider", sdk)
    monkeypatch.setattr(tracing, "_sql_tracer", LightTracer(sdk, tracing.SQL_TRACER_NAME))
    yield sdk, memory
    sdk.shutdown()


@pytest.fixture
async def traced_pool(
    provider: tuple[TracerProvider, InMemorySpanExporter], database_url: str
) -> AsyncIterator[PgPool]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


def _sql(memory: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in memory.get_finished_spans() if s.kind is SpanKind.CLIENT]


async def test_every_statement_method_makes_a_child_span_with_its_attributes(
    provider: tuple[TracerProvider, InMemorySpanExporter], traced_pool: PgPool, database_url: str
) -> None:
    sdk, memory = provider
    with sdk.get_tracer("test").start_as_current_span("GET /x") as request:
        async with traced_pool.acquire() as conn, conn.transaction():
            await conn.execute("CREATE TEMP TABLE sql_span_probe (n int)")
            await conn.executemany("INSERT INTO sql_span_probe VALUES ($1)", [(1,), (2,)])
            assert len(await conn.fetch("SELECT n FROM sql_span_probe")) == 2
            assert await conn.fetchval("/* count */ select count(*) FROM sql_span_probe") == 2
            row = await conn.fetchrow("SELECT max(n) AS m FROM sql_span_probe")
            assert row is not None
            assert row["m"] == 2
    spans = _sql(memory)
    assert [s.name for s in spans] == [
        "BEGIN",
        "CREATE",
        "INSERT",
        "SELECT",
        "SELECT",  # the leading comment is not the name
        "SELECT",
        "COMMIT",
    ]
    parent = request.get_span_context()
    expected = expected_connection_attributes(database_url)
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == parent.span_id
        assert span.context is not None
        assert span.context.trace_id == parent.trace_id
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == tracing.SQL_TRACER_NAME
        assert span.attributes is not None
        attributes = dict(span.attributes)
        assert attributes.pop("db.statement")
        if expected["net.transport"] == "other":  # the socket's path: /dir/.s.PGSQL.<port>
            assert ".s.PGSQL." in str(attributes.pop("net.peer.name"))
        assert attributes == {"db.system": "postgresql", **expected}
        assert span.status.status_code is StatusCode.UNSET
    assert spans[2].attributes is not None
    assert spans[2].attributes["db.statement"] == "INSERT INTO sql_span_probe VALUES ($1)"


def expected_connection_attributes(url: str) -> dict[str, str | int]:
    """What the database URL says: database, user, and host and port (TCP) or the
    socket's directory (a unix socket, the embedded server)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    user = parts.username or query.get("user", [getpass.getuser()])[0]
    database = parts.path.lstrip("/") or user
    expected: dict[str, str | int] = {"db.name": database, "db.user": user}
    if parts.hostname:
        expected["net.peer.name"] = parts.hostname
        expected["net.peer.port"] = parts.port or 5432
        expected["net.transport"] = "ip_tcp"
    else:
        expected["net.transport"] = "other"
    return expected


async def _missing_table(conn: Any) -> None:
    await conn.fetchval("SELECT n FROM no_such_table_here")


async def _cancelled(conn: Any) -> None:
    statement = asyncio.ensure_future(conn.execute("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.2)
    statement.cancel()
    await statement


@pytest.mark.parametrize(
    ("run", "raised", "status", "error_type"),
    [
        (_missing_table, asyncpg.UndefinedTableError, StatusCode.ERROR, "UndefinedTableError"),
        (_cancelled, asyncio.CancelledError, StatusCode.UNSET, None),  # not a failure
    ],
)
async def test_a_statement_that_raises_ends_its_span_and_still_raises(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    traced_pool: PgPool,
    run: Callable[[Any], Awaitable[None]],
    raised: type[BaseException],
    status: StatusCode,
    error_type: str | None,
) -> None:
    """A failed statement marks its span (``error.type``); a cancelled one does not."""
    sdk, memory = provider
    with sdk.get_tracer("test").start_as_current_span("GET /x"):
        async with traced_pool.acquire() as conn:
            with pytest.raises(raised):
                await run(conn)
    (span,) = _sql(memory)
    assert span.name == "SELECT"
    assert span.end_time is not None
    assert span.status.status_code is status
    assert span.attributes is not None
    assert span.attributes.get("error.type") == error_type


async def test_no_span_outside_a_sampled_span_or_where_suppressed(
    provider: tuple[TracerProvider, InMemorySpanExporter], traced_pool: PgPool
) -> None:
    _sdk, memory = provider
    unsampled = NonRecordingSpan(
        SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7, False, TraceFlags(0))
    )
    async with traced_pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1  # no span current: background work
        with trace.use_span(unsampled):
            assert await conn.fetchval("SELECT 2") == 2
        with _sdk.get_tracer("test").start_as_current_span("poll"), suppress_instrumentation():
            assert await conn.fetchval("SELECT 3") == 3  # tracing.untraced()
    assert _sql(memory) == []


async def test_with_tracing_off_the_pool_uses_asyncpg_s_own_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool opened with tracing off never asks for SQL spans: tracing turned on
    later (the SQL tracer set, a sampled span current) still sees no statement."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    memory = InMemorySpanExporter()
    sdk = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    sdk.add_span_processor(SimpleSpanProcessor(memory))
    try:
        monkeypatch.setattr(tracing, "_sql_tracer", LightTracer(sdk, tracing.SQL_TRACER_NAME))
        with sdk.get_tracer("test").start_as_current_span("GET /x"):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        assert _sql(memory) == []
    finally:
        await pool.close()
        sdk.shutdown()


def test_statement_names_are_the_first_keyword() -> None:
    assert tracing.statement_name("  with x AS (SELECT 1) SELECT * FROM x") == "WITH"
    assert tracing.statement_name("/* a\ncomment */ UPDATE t SET n = 1") == "UPDATE"
    assert tracing.statement_name("") == "postgresql"
