"""PostgreSQL statements get CLIENT spans from the pool's connection class, on a real
PostgreSQL, only inside a sampled span (tracing.sql_span, runtime/database.py)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Iterator
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
from firewatch.runtime.database import PgPool, TracedConnection, create_pool


@pytest.fixture
def provider(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """Tracing on, as configure() leaves it, with spans kept in memory."""
    memory = InMemorySpanExporter()
    sdk = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    sdk.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_provider", sdk)
    monkeypatch.setattr(tracing, "_sql_tracer", sdk.get_tracer(tracing.SQL_TRACER_NAME))
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
        async with traced_pool.acquire() as conn:
            assert isinstance(conn._con, TracedConnection)  # type: ignore[attr-defined]
            async with conn.transaction():
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


async def test_a_failed_statement_marks_its_span_and_still_raises(
    provider: tuple[TracerProvider, InMemorySpanExporter], traced_pool: PgPool
) -> None:
    sdk, memory = provider
    with sdk.get_tracer("test").start_as_current_span("GET /x"):
        async with traced_pool.acquire() as conn:
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetchval("SELECT n FROM no_such_table_here")
    (span,) = _sql(memory)
    assert span.name == "SELECT"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "UndefinedTableError"


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


async def test_with_tracing_off_the_pool_uses_asyncpg_s_own_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert type(conn._con) is asyncpg.Connection  # type: ignore[attr-defined]
    finally:
        await pool.close()


def test_statement_names_are_the_first_keyword() -> None:
    assert tracing.statement_name("  with x AS (SELECT 1) SELECT * FROM x") == "WITH"
    assert tracing.statement_name("/* a\ncomment */ UPDATE t SET n = 1") == "UPDATE"
    assert tracing.statement_name("") == "postgresql"


async def test_a_cancelled_statement_ends_its_span_without_an_error(
    provider: tuple[TracerProvider, InMemorySpanExporter], traced_pool: PgPool
) -> None:
    sdk, memory = provider
    with sdk.get_tracer("test").start_as_current_span("GET /x"):
        async with traced_pool.acquire() as conn:
            statement = asyncio.ensure_future(conn.execute("SELECT pg_sleep(5)"))
            await asyncio.sleep(0.2)
            statement.cancel()
            with pytest.raises(asyncio.CancelledError):
                await statement
    (span,) = _sql(memory)
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert "error.type" not in span.attributes
