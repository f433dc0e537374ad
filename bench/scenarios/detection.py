"""Analytics and detection, measured in-process (no HTTP): anomaly scoring
throughput on one core, MTTA/MTTR over ``--seed-rows`` incidents (1,000,000 by
default) read from PostgreSQL, and similar-incident top-5 latency over a tenth as
many incidents (100,000 by default; the scoring stream has as many points).

The incidents are seeded with one ``INSERT ... SELECT generate_series`` per 250k rows,
secondary indexes built once afterwards (bench/seed.py). At the default sizes the
scenario takes about two minutes on an idle 2-core machine; the load average at the
start is printed with the figures, since the host is shared."""

from __future__ import annotations

import asyncio
import math
import os
import time

import numpy as np
import psutil

from bench import seed
from bench.context import BenchContext
from bench.harness import Report
from bench.scenarios import scenario


def _scoring(report: Report, rounds: int, points: int) -> None:
    from firewatch.detection import anomaly, features, synthetic
    from firewatch.detection.anomaly import DetectorParams

    params = DetectorParams()
    s = synthetic.stream(0, train_points=4032, test_points=points, anomalies_per_kind=5)
    trained = anomaly.fit(s.train_values, s.train_epochs, params)
    values = np.concatenate([s.train_values[-params.window :], s.test_values])
    epochs = np.concatenate([s.train_epochs[-params.window :], s.test_epochs])
    sec = report.section("scoring, one core", ("batch", "points/s (median)", "spread"))
    best = 0.0
    for batch in [b for b in (1_000, 10_000) if b <= points]:
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            done = 0
            for lo in range(params.window, len(values) - batch + 1, batch):
                window = slice(lo - params.window, lo + batch)
                rows = features.compute(
                    values[window], epochs[window], params.window, trained.profile, params.window
                )
                flags = anomaly.flags(anomaly.score(trained.model, rows), trained.threshold)
                anomaly.hysteresis(flags, np.zeros(0, dtype=bool), params.k, params.n)
                done += batch
            rates.append(done / (time.perf_counter() - start))
        median = float(np.median(rates))
        best = max(best, median)
        sec.rows.append((f"{batch:,}", f"{median:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}"))
    sec.notes.append("features + IsolationForest score + threshold + 3-of-5 hysteresis, n_jobs=1")
    report.target("scoring points/s per core (best batch)", best, 50_000, at_least=True)


def _backend_cpu(pid: int) -> psutil.Process | None:
    """The PostgreSQL backend serving the bench, when it runs on this host."""
    try:
        process = psutil.Process(pid)
        process.cpu_times()
    except (psutil.Error, OSError):
        return None
    return process


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return math.nan
    times = process.cpu_times()
    return float(times.user + times.system)


async def _analytics(url: str, rounds: int) -> tuple[list[float], list[float], list[float], int]:
    """Per round: wall seconds end to end, compute seconds, and CPU seconds (this
    process + both PostgreSQL backends; NaN when they are not on this host), which a
    busy shared host inflates far less than wall time."""
    from firewatch.analytics import metrics, store
    from firewatch.analytics.metrics import Options, Window
    from firewatch.runtime.database import create_pool

    pool = await create_pool(url, min_size=2, max_size=2)
    try:
        async with pool.acquire() as conn, pool.acquire() as helper:
            span = await conn.fetchrow("SELECT min(opened_at), max(opened_at) FROM incidents")
            backends = [
                _backend_cpu(int(await c.fetchval("SELECT pg_backend_pid()")))
                for c in (conn, helper)
            ]
        assert span is not None
        lo, hi = span[0], span[1]
        window = Window(lo, hi + (hi - lo) * 0.001)
        options = Options(as_of=hi)
        totals, computes, cpus = [], [], []
        n = 0

        def cpu() -> float:
            return time.process_time() + sum(_cpu(b) for b in backends)

        for _ in range(rounds):
            c0 = cpu()
            t0 = time.perf_counter()
            async with pool.acquire() as conn, pool.acquire() as helper:
                frame = await store.incidents_frame(conn, window.start, window.end, helper=helper)
            t1 = time.perf_counter()
            out = metrics.summary(frame, window, options)
            t2 = time.perf_counter()
            cpus.append(cpu() - c0)
            totals.append(t2 - t0)
            computes.append(t2 - t1)
            n = out["totals"]["incidents"]
        return totals, computes, cpus, n
    finally:
        await pool.close()


def _similar(report: Report, size: int, queries: int) -> None:
    from firewatch.detection.evaluation import _corpus
    from firewatch.detection.similar import SimilarIndex

    ids, texts, _ = _corpus(size, size // 100, seed=1)
    index = SimilarIndex()
    t0 = time.perf_counter()
    index.build(ids, texts)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    latencies = []
    for i in rng.integers(0, len(ids), queries):
        t = time.perf_counter()
        index.query(texts[int(i)], 5, exclude=ids[int(i)])
        latencies.append((time.perf_counter() - t) * 1000)
    p50, p99 = np.percentile(latencies, [50, 99])
    sec = report.section(f"similar incidents, {size:,} indexed", ("build s", "p50 ms", "p99 ms"))
    sec.rows.append((f"{build:.1f}", f"{p50:.2f}", f"{p99:.2f}"))
    report.target("similar top-5 p99", float(p99), 50, at_least=False, unit=" ms")


@scenario("detection", "scoring points/s, MTTA/MTTR over 1M incidents, similar top-5", order=60)
def run(ctx: BenchContext) -> Report:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report = Report("detection")
    rounds = max(ctx.knobs.rounds, 1)
    rows = ctx.knobs.seed_rows
    tenth = max(rows // 10, 2_000)
    load = os.getloadavg()
    ctx.progress("detection: scoring")
    _scoring(report, rounds, tenth)
    with ctx.database("analytics") as db:
        seed.migrate_firewatch(db)
        ctx.progress(f"detection: seeding {rows:,} incidents")
        seed.seed_incidents(db, rows, rebuild_indexes=True)
        ctx.progress("detection: MTTA/MTTR")
        totals, computes, cpus, n = asyncio.run(_analytics(db, rounds))
    sec = report.section(
        f"MTTA/MTTR summary over {n:,} incidents",
        ("read from PostgreSQL + compute s", "compute s", "CPU s (Python + 2 PostgreSQL backends)"),
    )
    cpu = float(np.median(cpus))
    sec.rows.append(
        (
            f"{np.median(totals):.2f}",
            f"{np.median(computes):.2f}",
            "-" if math.isnan(cpu) else f"{cpu:.2f}",
        )
    )
    sec.notes.append("summary = totals, MTTA/TTM/MTTR by 4 dimensions, weekly, repeats, SLO")
    sec.notes.append(
        "read as the API does with a free second pool connection: two COPYs of half the "
        "table each, in one snapshot"
    )
    sec.notes.append(
        f"median of {rounds} rounds; rounds took {', '.join(f'{t:.2f}' for t in totals)} s"
    )
    report.target(
        "MTTA/MTTR end to end (median)", float(np.median(totals)), 2.0, at_least=False, unit=" s"
    )
    ctx.progress("detection: similar incidents")
    _similar(report, tenth, min(500, tenth))
    report.section("host", ("load average 1/5/15 min at the start", "cores")).rows.append(
        ("/".join(f"{x:.2f}" for x in load), str(os.cpu_count()))
    )
    return report
