"""firewatch create/get/list against the minimal asyncpg app and the ORM app.

Three servers run side by side (each one uvicorn worker, each its own throwaway
database with the same table and the same number of rows); wrk drives them in
alternating rounds and the figures are medians over the rounds.
"""

from __future__ import annotations

import orjson

from bench import seed
from bench.auth import api_headers
from bench.context import BenchContext
from bench.harness import Load, Report, Stack, Stat, paired_ratio, ratio_note
from bench.scenarios import scenario
from firewatch.settings import Settings

BODY = orjson.dumps(
    {
        "title": "Feature drift on checkout-ranker",
        "severity": "SEV2",
        "category": "data_drift",
        "description": "PSI above 0.2 on 3 features since 09:40 UTC",
        "service": "checkout-ranker",
        "team": "ml-platform",
        "labels": {"env": "prod", "region": "eu-west-1"},
    }
)

#: After firewatch's create round: its suggester's next run (every
#: FIREWATCH_SIMILAR_SUGGEST_INTERVAL, 10 s by default) scores the round's incidents, and
#: that work must neither land in the next round (firewatch's own GET) nor go unseen: it
#: is reported as the create's deferred CPU.
SUGGESTER_WAIT = float(Settings.model_fields["similar_suggest_interval"].default) + 1.0

FIREWATCH = "firewatch"
MINIMAL = "minimal"
ORM = "orm"


@scenario("incidents", "firewatch create/get/list vs minimal asyncpg and ORM apps", order=10)
def run(ctx: BenchContext) -> Report:
    report = Report("incidents")
    rows = ctx.knobs.get_rows
    with (
        ctx.database("fw") as fw_db,
        ctx.database("minimal") as min_db,
        ctx.database("orm") as orm_db,
    ):
        seed.migrate_firewatch(fw_db)
        seed.create_baseline_table(min_db)
        seed.create_baseline_table(orm_db)
        for url in (fw_db, min_db, orm_db):
            seed.seed_incidents(url, rows)
        ids = {
            name: seed.id_range(url)
            for name, url in ((FIREWATCH, fw_db), (MINIMAL, min_db), (ORM, orm_db))
        }
        headers = api_headers(fw_db)
        with (
            ctx.firewatch(fw_db) as fw,
            ctx.baseline(MINIMAL, "bench.baselines.minimal:create_app", min_db) as minimal,
            ctx.baseline(ORM, "bench.baselines.orm:create_app", orm_db) as orm,
        ):
            stacks = [
                Stack(
                    fw,
                    [
                        Load(
                            "create",
                            "POST",
                            "/api/v1/incidents",
                            BODY,
                            headers=headers,
                            after=SUGGESTER_WAIT,
                        ),
                        Load(
                            "get",
                            "GET",
                            "/api/v1/incidents/INC-{id}",
                            ids=ids[FIREWATCH],
                            headers=headers,
                        ),
                        Load("list", "GET", "/api/v1/incidents?limit=50", headers=headers),
                    ],
                ),
                Stack(
                    minimal,
                    [
                        Load("create", "POST", "/incidents", BODY),
                        Load("get", "GET", "/incidents/{id}", ids=ids[MINIMAL]),
                    ],
                ),
                Stack(
                    orm,
                    [
                        Load("create", "POST", "/incidents", BODY),
                        Load("get", "GET", "/incidents/{id}", ids=ids[ORM]),
                    ],
                ),
            ]
            stats = ctx.alternate(stacks)
    k = ctx.knobs
    table = report.section(
        f"wrk, {k.connections} connections, {k.rounds} alternating rounds of {k.duration:g}s "
        f"(medians; {rows} rows per table before the rounds)",
        (
            "stack",
            "request",
            "req/s",
            "req/s per round",
            "p50 ms",
            "p99 ms",
            "server CPU us/req",
            "deferred",
        ),
    )
    for (stack, load), st in stats.items():
        cpu = st.cpu_us_per_request
        deferred = st.deferred_us_per_request
        table.rows.append(
            (
                stack,
                load,
                f"{st.rps:.0f}",
                st.rps_spread(),
                f"{st.p50_ms:.2f}",
                f"{st.p99_ms:.2f}",
                f"{cpu:.0f}" if cpu is not None else "-",
                f"{deferred:.0f}" if deferred is not None else "-",
            )
        )
    table.notes.append(
        "server CPU = user+sys seconds of the server process during the round / requests "
        "(Python side only; PostgreSQL's CPU is not in it): steadier than req/s on a busy host."
    )
    table.notes.append(
        f"deferred = CPU us per request of the server's process tree in the {SUGGESTER_WAIT:g} s "
        "after the round and until it settled (firewatch's suggester scoring the round's "
        "incidents, the audit sealer), outside every measured round."
    )
    table.notes.append(
        "firewatch create = incident + 'created' timeline row + audit entry + notifications "
        "of matching destinations (none here), one statement per incident, or per batch of "
        "up to 4 creates that arrive together (ADR-008, item 6); the baselines insert the "
        "incident only, one statement per request."
    )

    def s(stack: str, load: str) -> Stat:
        return stats[(stack, load)]

    for name, (a, b), threshold in (
        ("firewatch GET / minimal GET", ((FIREWATCH, "get"), (MINIMAL, "get")), 1.0),
        ("firewatch create / minimal POST", ((FIREWATCH, "create"), (MINIMAL, "create")), 0.8),
        ("firewatch create / ORM POST", ((FIREWATCH, "create"), (ORM, "create")), 2.0),
    ):
        report.target(
            name,
            paired_ratio(s(*a), s(*b)),
            threshold,
            at_least=True,
            unit="x",
            note=ratio_note(s(*a), s(*b)),
        )
    return report
