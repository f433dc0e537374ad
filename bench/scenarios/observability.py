"""GET incident with tracing (10% sampled, exported over OTLP/gRPC) and metrics on vs both off.

Two ``firewatch serve`` processes on the same seeded database, alternating wrk rounds:

- ``observed``: ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``..._ARG=0.1``, spans
  exported to a real OTLP/gRPC receiver in this process (it only counts them),
  Prometheus metrics recorded (``FIREWATCH_METRICS_ENABLED=true``);
- ``plain``: ``OTEL_SDK_DISABLED=true`` and ``FIREWATCH_METRICS_ENABLED=false``.

Target (issue 7): observed GET req/s >= 0.9x plain, from the same run.
"""

from __future__ import annotations

from bench import seed
from bench.auth import api_headers
from bench.context import BenchContext
from bench.harness import Load, Report, Stack, ratio
from bench.scenarios import scenario
from tests.observability.otlp import OtlpReceiver

OBSERVED = "observed"
PLAIN = "plain"


@scenario(
    "observability",
    "GET incident: tracing at 10% sampling + metrics vs both off (issue 7)",
    order=40,
)
def run(ctx: BenchContext) -> Report:
    report = Report("observability")
    receiver = OtlpReceiver(keep=False).start()
    try:
        with ctx.database("obs") as db:
            seed.migrate_firewatch(db)
            seed.seed_incidents(db, ctx.knobs.get_rows)
            ids = seed.id_range(db)
            headers = api_headers(db)
            observed_env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
                "FIREWATCH_METRICS_ENABLED": "true",
            }
            plain_env = {"OTEL_SDK_DISABLED": "true", "FIREWATCH_METRICS_ENABLED": "false"}
            get = "/api/v1/incidents/INC-{id}"
            with (
                ctx.firewatch(db, name=OBSERVED, env=observed_env) as observed,
                ctx.firewatch(db, name=PLAIN, env=plain_env) as plain,
            ):
                stats = ctx.alternate(
                    [
                        Stack(observed, [Load("get", "GET", get, ids=ids, headers=headers)]),
                        Stack(plain, [Load("get", "GET", get, ids=ids, headers=headers)]),
                    ]
                )
    finally:
        receiver.stop()
    k = ctx.knobs
    table = report.section(
        f"wrk GET incident, {k.connections} connections, {k.rounds} alternating rounds of "
        f"{k.duration:g}s (medians)",
        ("stack", "req/s", "req/s per round", "p50 ms", "p99 ms"),
    )
    for (stack, _load), st in stats.items():
        table.rows.append(
            (stack, f"{st.rps:.0f}", st.rps_spread(), f"{st.p50_ms:.2f}", f"{st.p99_ms:.2f}")
        )
    table.notes.append(
        f"spans received by the OTLP/gRPC receiver during the run: {receiver.count} "
        "(10% of requests sampled; each sampled GET = server span + SQL spans)"
    )
    report.target(
        "tracing 10% + metrics / both off (GET incident)",
        ratio(stats[(OBSERVED, "get")].rps, stats[(PLAIN, "get")].rps),
        0.9,
        at_least=True,
        unit="x",
    )
    return report
