"""Keyset list of 50 with 1,000,000 incidents: p99 per page shape, one connection.

Server time is measured as wrk latency on loopback with ONE connection: requests
never queue behind each other, so each latency is the server's time plus a
loopback round trip and wrk's own bookkeeping, i.e. an upper bound of server time.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from bench import seed
from bench.auth import api_headers
from bench.context import BenchContext
from bench.harness import Load, Report, run_wrk
from bench.scenarios import scenario

TARGET_MS = 20.0


@scenario("keyset", "keyset list p99 with 1,000,000 incidents seeded", order=20)
def run(ctx: BenchContext) -> Report:
    from firewatch.http.pagination import encode_cursor

    report = Report("keyset")
    rows = ctx.knobs.seed_rows
    with ctx.database("keyset") as db:
        seed.migrate_firewatch(db)
        ctx.progress(f"seeding {rows} incidents")
        took = seed.seed_incidents(db, rows, rebuild_indexes=True)
        ctx.progress(f"seeded in {took:.1f}s")
        lo, hi = seed.id_range(db)
        headers = api_headers(db)
        # A cursor as the server issues it for a page ending at that id (checked below).
        deep = encode_cursor(lo + (hi - lo) // 10)
        pages: dict[str, dict[str, str | int]] = {
            "first page": {"limit": 50},
            "deep page (cursor, 90% in)": {"limit": 50, "cursor": deep},
            "status=open": {"limit": 50, "status": "open"},
            "service+status": {"limit": 50, "service": "svc-7", "status": "resolved"},
            "severity+category, deep": {
                "limit": 50,
                "severity": "SEV2",
                "category": "latency",
                "cursor": deep,
            },
            "team, deep": {"limit": 50, "team": "team-5", "cursor": deep},
        }
        search: dict[str, dict[str, str | int]] = {
            "q=drift (full text)": {"limit": 50, "q": "drift"}
        }
        with ctx.firewatch(db) as fw:
            with httpx.Client(base_url=fw.base_url, headers=headers, timeout=30) as client:
                first = client.get("/api/v1/incidents", params={"limit": 50})
                first.raise_for_status()
                issued = first.json()["next_cursor"]
                page2 = client.get("/api/v1/incidents", params={"limit": 50, "cursor": issued})
                page2.raise_for_status()
                if [i["number"] for i in first.json()["items"]][-1] - 1 != page2.json()["items"][0][
                    "number"
                ]:
                    raise RuntimeError("the cursor the server issued did not continue the list")
                for params in (pages | search).values():
                    got = client.get("/api/v1/incidents", params=params)
                    got.raise_for_status()
                    if len(got.json()["items"]) != 50:
                        raise RuntimeError(f"{params} returned {len(got.json()['items'])} items")
            sec = report.section(
                f"GET /api/v1/incidents, {rows} incidents, wrk 1 connection, "
                f"{ctx.knobs.latency_duration:g}s each",
                ("page", "req/s", "p50 ms", "p99 ms", "max ms"),
            )
            results = {}
            for name, params in (pages | search).items():
                load = Load(name, "GET", "/api/v1/incidents?" + urlencode(params), headers=headers)
                r = run_wrk(fw.base_url, load, duration=ctx.knobs.latency_duration, connections=1)
                results[name] = r
                ctx.progress(f"{name}: p99 {r.p99_ms:.2f} ms")
                sec.rows.append(
                    (
                        name,
                        f"{r.rps:.0f}",
                        f"{r.p50_ms:.2f}",
                        f"{r.p99_ms:.2f}",
                        f"{r.max_ms:.2f}",
                    )
                )
    sec.notes.append(
        f"seeded with INSERT ... SELECT generate_series in {took:.1f}s (indexes rebuilt after)"
    )
    sec.notes.append(
        "server time = wrk latency at 1 connection on loopback (upper bound: no queueing)"
    )
    for name in pages:
        report.target(
            f"list p99 {name}", results[name].p99_ms, TARGET_MS, at_least=False, unit=" ms"
        )
    for name in search:
        report.target(
            f"list p99 {name}",
            results[name].p99_ms,
            TARGET_MS,
            at_least=False,
            unit=" ms",
        )
    return report
