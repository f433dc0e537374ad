"""Creates that arrive together are opened together (service.CreateBatcher, ADR-008
item 6), each exactly as if alone, on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from firewatch.audit.chain import digest
from firewatch.auth.principal import Principal
from firewatch.incidents import service, store
from firewatch.runtime.database import PgPool, create_pool
from tests.incidents.test_api import API, unique
from tests.notifications.test_delivery import destination

ACTOR = Principal("batch-test", "user", "responder", client="client-7")


def new(n: int, svc: str, **fields: Any) -> service.NewIncident:
    values: dict[str, Any] = {
        "title": f"GPU OOM on trainer {n}",
        "severity": n % 4 + 1,
        "category": "latency",
        "description": f"batch member {n}",
        "service": svc,
        "team": "ml-platform",
        "owner": None if n % 2 else f"owner-{n}",
        "labels": {"n": str(n)},
    }
    values.update(fields)
    return service.NewIncident(**values)


async def timeline_and_audit(pool: PgPool, incident_id: int) -> tuple[Any, asyncpg.Record]:
    async with pool.acquire() as conn:
        entries = await conn.fetch(
            "SELECT kind, actor, after, at FROM incident_timeline WHERE incident_id = $1",
            incident_id,
        )
        audit = await conn.fetch(
            "SELECT actor, actor_kind, action, after_digest, client, details FROM audit_log "
            "WHERE target = $1",
            f"INC-{incident_id}",
        )
    assert len(entries) == 1
    assert len(audit) == 1
    return entries[0], audit[0]


async def test_creates_of_one_turn_share_statements_and_each_gets_its_own_incident(
    pool: PgPool,
) -> None:
    svc = unique()
    batcher = service.CreateBatcher(pool, max_batch=4, max_running=2)
    before = datetime.now(UTC)
    rows = await asyncio.gather(*(batcher.create(ACTOR, new(n, svc)) for n in range(12)))
    # 12 in one turn: two batches of 4 at once, the third when one of them is done
    assert batcher.statements == 3
    assert len({row["id"] for row in rows}) == 12
    for n, row in enumerate(rows):
        asked = new(n, svc)
        assert row["title"] == asked.title
        assert row["severity"] == asked.severity
        assert row["owner"] == asked.owner
        assert row["labels"] == asked.labels
        assert row["status"] == "open"
        assert row["version"] == 1
        assert row["created_by"] == ACTOR.subject
        assert before <= row["opened_at"] == row["updated_at"] <= datetime.now(UTC)
        entry, audit = await timeline_and_audit(pool, row["id"])
        snapshot = service.created_snapshot(asked)
        assert entry["kind"] == "created"
        assert entry["actor"] == ACTOR.subject
        assert entry["after"] == snapshot
        assert entry["at"] == row["opened_at"]
        assert audit["action"] == "incident.create"
        assert audit["after_digest"] == digest(snapshot)
        assert (audit["actor"], audit["actor_kind"], audit["client"]) == (
            ACTOR.subject,
            ACTOR.kind,
            ACTOR.client,
        )
        assert audit["details"] == {}
    async with pool.acquire() as conn:
        queued = await conn.fetchval(
            "SELECT count(*) FROM audit_pending p JOIN audit_log a ON a.id = p.entry_id "
            "WHERE a.target = ANY ($1::text[])",
            [f"INC-{row['id']}" for row in rows],
        )
    # the sealer may have sealed some already; none is missing from both queue and seal
    async with pool.acquire() as conn:
        sealed = await conn.fetchval(
            "SELECT count(*) FROM audit_seal s JOIN audit_log a ON a.id = s.entry_id "
            "WHERE a.target = ANY ($1::text[])",
            [f"INC-{row['id']}" for row in rows],
        )
    assert queued + sealed == 12


async def test_a_batch_opens_what_one_create_alone_opens(pool: PgPool) -> None:
    svc = unique()
    asked = new(3, svc)
    lone = service.CreateBatcher(pool)
    alone = await lone.create(ACTOR, asked)
    assert lone.statements == 1  # the one-row statement
    batcher = service.CreateBatcher(pool)
    together = await asyncio.gather(*(batcher.create(ACTOR, asked) for _ in range(3)))
    assert batcher.statements == 1
    moving = {"id", "opened_at", "updated_at"}
    for row in together:
        assert {k: v for k, v in row.items() if k not in moving} == {
            k: v for k, v in alone.items() if k not in moving
        }
        entry, audit = await timeline_and_audit(pool, row["id"])
        entry_alone, audit_alone = await timeline_and_audit(pool, alone["id"])
        assert entry["after"] == entry_alone["after"]
        assert dict(audit) == dict(audit_alone)


async def test_each_incident_of_a_batch_notifies_in_its_own_requests_trace(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    svc = unique()
    await destination(client, svc, "http://127.0.0.1:9/unused")
    batcher = service.CreateBatcher(pool)

    async def traced(n: int) -> asyncpg.Record:
        span = NonRecordingSpan(
            SpanContext(
                trace_id=0xABC000 + n,
                span_id=0xDEF000 + n,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        with trace.use_span(span):
            return await batcher.create(ACTOR, new(n, svc, severity=1))

    rows = await asyncio.gather(*(traced(n) for n in range(4)))
    assert batcher.statements == 1
    async with pool.acquire() as conn:
        for n, row in enumerate(rows):
            notes = await conn.fetch(
                "SELECT event_kind, traceparent, payload FROM notifications WHERE incident_id = $1",
                row["id"],
            )
            assert len(notes) == 1
            assert notes[0]["event_kind"] == "incident.opened"
            assert notes[0]["traceparent"] == f"00-{0xABC000 + n:032x}-{0xDEF000 + n:016x}-01"
            assert notes[0]["payload"]["incident"]["number"] == row["id"]
            assert notes[0]["payload"]["incident"]["title"] == new(n, svc).title


async def test_a_row_postgresql_refuses_fails_only_its_own_request(pool: PgPool) -> None:
    svc = unique()
    batcher = service.CreateBatcher(pool)
    asked = [new(n, svc) for n in range(4)]
    asked[2] = new(2, svc, title="x" * 301)  # the table's CHECK, past the API's validation
    got = await asyncio.gather(*(batcher.create(ACTOR, a) for a in asked), return_exceptions=True)
    assert isinstance(got[2], asyncpg.CheckViolationError)
    for n in (0, 1, 3):
        row = got[n]
        assert isinstance(row, asyncpg.Record)
        assert row["title"] == asked[n].title
    assert batcher.statements == 1 + 4  # the refused batch, then each alone
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM incidents WHERE service = $1", svc) == 3


async def test_an_unknown_outcome_is_every_requests_answer_and_not_retried(
    database_url: str,
) -> None:
    closed = await create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    batcher = service.CreateBatcher(closed)
    got = await asyncio.gather(
        *(batcher.create(ACTOR, new(n, unique())) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(g, asyncpg.InterfaceError) for g in got), got
    assert batcher.statements == 1


async def test_a_lone_create_runs_alone_at_once(pool: PgPool) -> None:
    batcher = service.CreateBatcher(pool)
    row = await asyncio.wait_for(batcher.create(ACTOR, new(1, unique())), timeout=5)
    assert row["title"] == new(1, "").title
    assert batcher.statements == 1


@pytest.mark.parametrize("count", [10])
async def test_concurrent_api_creates_each_answer_their_own_incident(
    client: httpx.AsyncClient, count: int
) -> None:
    svc = unique()
    bodies = [
        {"title": f"Lag {n}", "severity": f"SEV{n % 4 + 1}", "service": svc} for n in range(count)
    ]
    answers = await asyncio.gather(*(client.post(API, json=body) for body in bodies))
    for body, r in zip(bodies, answers, strict=True):
        assert r.status_code == 201, r.text
        assert r.json()["title"] == body["title"]
        assert r.json()["severity"] == body["severity"]
        got = await client.get(r.headers["location"])
        assert got.json()["title"] == body["title"]
    assert len({r.json()["id"] for r in answers}) == count


async def test_many_in_one_statement_is_only_for_incidents_opened_by_hand(pool: PgPool) -> None:
    grouped = store.Creation(
        title="Alertmanager group",
        description="",
        severity=2,
        category="latency",
        service=None,
        team=None,
        owner=None,
        labels={},
        actor=ACTOR.subject,
        actor_kind=ACTOR.kind,
        client=None,
        snapshot={},
        after_digest=None,
        now=datetime.now(UTC),
        source="alertmanager",
        group_key='{}:{alertname="x"}',
    )
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="without a source"):
            await store.create_many(conn, [grouped, grouped])
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM incidents WHERE group_key = $1", grouped.group_key
            )
            == 0
        )


class _AcquireWatch:
    """The real pool, noting the trace id current where each statement takes its
    connection (the batch's context)."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self.trace_ids: list[int] = []

    def acquire(self) -> Any:
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        return self._pool.acquire()


async def test_each_batch_runs_in_its_first_requests_context(pool: PgPool) -> None:
    watch = _AcquireWatch(pool)
    # one at a time, one per batch: the later batches start when an earlier one ends
    batcher = service.CreateBatcher(cast(PgPool, watch), max_batch=1, max_running=1)
    svc = unique()

    async def traced(n: int) -> asyncpg.Record:
        span = NonRecordingSpan(
            SpanContext(trace_id=0x5EED00 + n, span_id=0x1 + n, is_remote=False)
        )
        with trace.use_span(span):
            return await batcher.create(ACTOR, new(n, svc))

    await asyncio.gather(*(traced(n) for n in range(3)))
    assert watch.trace_ids == [0x5EED00, 0x5EED01, 0x5EED02]
