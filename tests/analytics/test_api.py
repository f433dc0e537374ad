"""Analytics over HTTP and the CLI, on the hand-computed fixture in real PostgreSQL.

Each test inserts the fixture into its own year, so the custom window isolates it
from every other incident in the worker's database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys

import httpx

from firewatch.runtime.database import PgPool
from tests.analytics.fixture import insert

API = "/api/v1/analytics"


def _range(year: int) -> dict[str, str]:
    return {"from": f"{year}-01-01T00:00:00Z", "to": f"{year}-01-15T00:00:00Z"}


async def test_summary_matches_the_hand_computed_figures(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    async with pool.acquire() as conn:
        await insert(conn, 1991)
    r = await client.get(f"{API}/summary", params=_range(1991))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["window"]["from"] == "1991-01-01T00:00:00Z"
    assert data["totals"]["incidents"] == 6
    assert data["totals"]["unacknowledged"] == 2
    assert data["mtta"] == {
        "count": 4,
        "p50_seconds": 90.0,
        "p90_seconds": 456.0,
        "mean_seconds": 202.5,
    }
    assert data["mttr"]["mean_seconds"] == 2200.0
    assert data["repeats"]["repeat_incidents"] == 3  # one repeat is of a Dec 31 incident
    assert [w["week_start"] for w in data["weekly"]] == [
        "1990-12-31T00:00:00Z",  # 1991-01-01 was a Tuesday
        "1991-01-07T00:00:00Z",
        "1991-01-14T00:00:00Z",
    ]
    slo = {s["severity"]: s for s in data["slo"]}
    assert (slo["SEV1"]["ack_breaches"], slo["SEV1"]["resolve_breaches"]) == (1, 2)
    assert data["definitions"] == "docs/metrics.md"


async def test_filters_and_breakdown_csv(client: httpx.AsyncClient, pool: PgPool) -> None:
    async with pool.acquire() as conn:
        await insert(conn, 1992)
    params = {**_range(1992), "by": "service", "format": "csv"}
    r = await client.get(f"{API}/breakdown", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["key"] for row in rows] == ["(none)", "svc-a", "svc-b", "svc-c"]
    svc_a = rows[1]
    assert svc_a["incidents"] == "2"
    assert svc_a["mtta_p50_seconds"] == "360.0"
    assert svc_a["mttr_mean_seconds"] == "2400.0"

    one = await client.get(f"{API}/summary", params={**_range(1992), "service": "svc-b"})
    assert one.json()["totals"]["incidents"] == 2
    sev = await client.get(f"{API}/summary", params={**_range(1992), "severity": "sev1"})
    assert sev.json()["totals"]["incidents"] == 3

    weekly = await client.get(f"{API}/weekly", params={**_range(1992), "format": "csv"})
    lines = weekly.text.strip().splitlines()
    assert lines[0].startswith("week_start,incidents,unacknowledged")
    assert len(lines) == 1 + 3
    slo = await client.get(f"{API}/slo", params=_range(1992))
    assert [s["severity"] for s in slo.json()["items"]] == ["SEV1", "SEV2"]


async def test_empty_window_and_relative_windows(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/summary", params=_range(1971))
    assert r.status_code == 200
    assert r.json()["totals"]["incidents"] == 0
    assert r.json()["mttr"]["p50_seconds"] is None
    empty_csv = await client.get(
        f"{API}/breakdown", params={**_range(1971), "format": "csv", "by": "team"}
    )
    assert empty_csv.status_code == 200
    assert empty_csv.text == ""
    for window in ("7d", "30d", "12h"):
        r = await client.get(f"{API}/summary", params={"window": window})
        assert r.status_code == 200, r.text


async def test_bad_input_is_problem_json(client: httpx.AsyncClient) -> None:
    bad = [
        {"window": "7w"},
        {"window": "0d"},
        {"from": "2001-01-01T00:00:00Z"},
        {"from": "2001-01-02T00:00:00Z", "to": "2001-01-01T00:00:00Z"},
        {"from": "2001-01-01T00:00:00", "to": "2001-01-02T00:00:00"},
        {"window": "7d", "from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"},
        {"severity": "SEV9"},
        {"category": "nope"},
        {"service": "a\x00b"},
    ]
    for params in bad:
        r = await client.get(f"{API}/summary", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await client.get(f"{API}/breakdown", params={"by": "owner"})
    assert r.status_code == 422


def _firewatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firewatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_report_command_prints_tables(database_url: str, pool: PgPool) -> None:
    async with pool.acquire() as conn:
        team = f"report-{os.getpid()}"
        await conn.execute(
            "INSERT INTO incidents (title, severity, category, service, team, created_by, "
            "opened_at, acknowledged_at) VALUES ('cli fixture', 1, 'latency', 'svc-cli', $1, "
            "'fixture', now() - interval '2 hours', now() - interval '1 hour')",
            team,
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    env.update(
        {
            "FIREWATCH_DATABASE_URL": database_url,
            "FIREWATCH_REDIS_URL": "redis://127.0.0.1:1/0",  # not used by report
            "COLUMNS": "200",
        }
    )
    done = await asyncio.to_thread(_firewatch, env, "report", "--window", "1d", "--team", team)
    assert done.returncode == 0, done.stderr
    assert "by severity" in done.stdout
    assert "SEV1" in done.stdout
    assert "60.0m" in done.stdout  # MTTA of the one incident: 1 hour
    bad = await asyncio.to_thread(_firewatch, env, "report", "--window", "soon")
    assert bad.returncode == 2
    assert "--window" in bad.stderr
