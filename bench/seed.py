"""Bulk data for the bench: one INSERT ... SELECT over generate_series, never row by row.

The rows are valid firewatch incidents (checked categories and statuses, lifecycle
timestamps that fit the status) spread over services, teams and severities, opened
one minute apart so that id order and opened_at order agree.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.baselines.schema import INCIDENTS_DDL

_SEED = """
INSERT INTO incidents (title, description, severity, category, status, service, team, owner,
                       labels, created_by, opened_at, acknowledged_at, resolved_at, updated_at)
SELECT (ARRAY['Latency spike on', 'Feature drift in', 'Null rate up in', 'Pipeline failed:',
              'Accuracy dropped for', 'GPU cost spike on', 'Availability dip on',
              'Schema change broke'])[1 + g % 8] || ' svc-' || (g % 50) || ' #' || g,
       CASE WHEN g % 5 = 0 THEN 'Seeded by the bench: ' || md5(g::text) ELSE '' END,
       1 + (g % 4),
       (ARRAY['model_degradation', 'data_quality', 'data_drift', 'pipeline_failure',
              'latency', 'availability', 'cost_spike', 'security', 'other'])[1 + g % 9],
       st.status,
       'svc-' || (g % 50),
       'team-' || (g % 12),
       CASE WHEN g % 3 = 0 THEN 'oncall-' || (g % 40) END,
       jsonb_build_object('env', CASE WHEN g % 2 = 0 THEN 'prod' ELSE 'staging' END),
       'bench',
       t.opened,
       CASE WHEN st.status <> 'open' THEN t.opened + interval '5 minutes' END,
       CASE WHEN st.status IN ('resolved', 'closed') THEN t.opened + interval '1 hour' END,
       t.opened
  FROM generate_series($1::bigint, $2::bigint) AS g
 CROSS JOIN LATERAL (SELECT timestamptz '2020-01-01' + g * interval '1 minute' AS opened) t
 CROSS JOIN LATERAL (SELECT CASE
        WHEN g > $2 - 200 THEN (ARRAY['open', 'acknowledged', 'investigating'])[1 + g % 3]
        ELSE (ARRAY['resolved', 'closed', 'resolved', 'closed', 'resolved', 'mitigated',
                    'open'])[1 + g % 7] END AS status) st
"""


async def _seed(url: str, rows: int, *, rebuild_indexes: bool, chunk: int) -> float:
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        indexes: list[asyncpg.Record] = []
        if rebuild_indexes:
            # Building secondary indexes once after the load beats maintaining them
            # row by row; the definitions come from the catalog, so they stay exact.
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'incidents'"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
            for idx in indexes:
                await conn.execute(f'DROP INDEX "{idx["indexname"]}"')
        start = 1
        while start <= rows:
            end = min(rows, start + chunk - 1)
            await conn.execute(_SEED, start, end)
            start = end + 1
        if rebuild_indexes:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            for idx in indexes:
                await conn.execute(idx["indexdef"])
        await conn.execute("VACUUM (ANALYZE) incidents")
    finally:
        await conn.close()
    return time.monotonic() - started


def seed_incidents(url: str, rows: int, *, rebuild_indexes: bool = False) -> float:
    """Insert ``rows`` incidents; returns the seconds it took."""
    return asyncio.run(
        _seed(url, rows, rebuild_indexes=rebuild_indexes, chunk=max(1, min(rows, 250_000)))
    )


async def _create_baseline_table(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(INCIDENTS_DDL)
    finally:
        await conn.close()


def create_baseline_table(url: str) -> None:
    asyncio.run(_create_baseline_table(url))


def migrate_firewatch(url: str) -> None:
    from firewatch.runtime import migrations

    asyncio.run(migrations.upgrade(url))


async def _id_range(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT min(id), max(id) FROM incidents")
    finally:
        await conn.close()
    if row is None or row[0] is None:
        raise RuntimeError("no incidents seeded")
    return int(row[0]), int(row[1])


def id_range(url: str) -> tuple[int, int]:
    return asyncio.run(_id_range(url))
