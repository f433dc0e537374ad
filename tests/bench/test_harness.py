"""The bench machinery runs end to end against a tiny load (no timing assertions).

`make bench` is not part of the suite; this keeps its code from rotting: real
servers, real wrk, real throwaway databases that are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis as redis_sync

from bench import harness, seed
from bench.context import BenchContext, Knobs
from bench.scenarios import discover
from bench.scenarios.incidents import BODY

TINY = Knobs(
    duration=1,
    rounds=1,
    connections=2,
    warmup=0,
    seed_rows=2000,
    get_rows=50,
    latency_duration=1,
    start_repeats=1,
)


def _tiny(admin_database_url: str, redis_url: str, tmp_path: Path) -> BenchContext:
    """A quiet context with the tiny knobs, on the test servers."""
    return BenchContext(
        harness.Backends(admin_database_url, redis_url, "test"), tmp_path, TINY, quiet=True
    )


async def _remaining(admin_url: str, ctx: BenchContext) -> set[str]:
    """The databases ``ctx`` created that still exist (benches run by others on the same
    server, concurrently, have their own and are not counted)."""
    names = [urlsplit(url).path.lstrip("/") for url in ctx.created]
    assert names
    assert all(n.startswith(harness.DATABASE_PREFIX) for n in names)
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
        )
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


def test_incidents_scenario_runs_all_stacks_and_drops_its_databases(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = _tiny(admin_database_url, redis_url, tmp_path)
    report = discover()["incidents"].run(ctx)

    rows = report.sections[0].rows
    assert {(r[0], r[1]) for r in rows} == {
        ("firewatch", "create"),
        ("firewatch", "get"),
        ("firewatch", "list"),
        ("minimal", "create"),
        ("minimal", "get"),
        ("orm", "create"),
        ("orm", "get"),
    }
    assert all(float(r[2]) > 0 for r in rows)
    # the work a create round leaves (suggestions for its incidents) is measured apart
    deferred = {(r[0], r[1]): r[7] for r in rows}
    assert float(deferred[("firewatch", "create")]) > 0
    assert {v for k, v in deferred.items() if k != ("firewatch", "create")} == {"-"}
    assert [t.name for t in report.targets] == [
        "firewatch GET / minimal GET",
        "firewatch create / minimal POST",
        "firewatch create / ORM POST",
    ]
    text = report.render()
    for t in report.targets:
        assert t.verdict() in text
    assert asyncio.run(_remaining(admin_database_url, ctx)) == set()


def test_wrk_errors_stop_the_bench(admin_database_url: str, tmp_path: Path) -> None:
    """A non-2xx answer makes the figure meaningless: the harness refuses it."""
    with harness.throwaway_database(admin_database_url, "smoke") as url:
        spec = harness.baseline_server("minimal", "bench.baselines.minimal:create_app", url)
        seed.create_baseline_table(url)
        with harness.serve(spec, tmp_path) as server:
            missing = harness.Load("get", "GET", "/incidents/{id}", ids=(10**9, 10**9 + 5))
            with pytest.raises(harness.LoadError, match="errors"):
                harness.run_wrk(server.base_url, missing, duration=1, connections=1)


def test_targets_compare_the_measured_value() -> None:
    assert harness.Target("r", 0.79, 0.8, at_least=True).verdict() == "MISS"
    assert harness.Target("r", 0.8, 0.8, at_least=True).verdict() == "PASS"
    assert harness.Target("p99", 19.9, 20, at_least=False).verdict() == "PASS"
    assert harness.Target("p99", 20.0, 20, at_least=False).verdict() == "MISS"


def test_auth_scenario_compares_with_the_pre_auth_build(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = _tiny(admin_database_url, redis_url, tmp_path)
    report = discover()["auth"].run(ctx)
    assert {r[0] for r in report.sections[0].rows} == {"with-auth", "pre-auth"}
    assert all(float(r[1]) > 0 for r in report.sections[0].rows)
    assert [t.name for t in report.targets] == ["authenticated GET / pre-auth GET"]


def test_detection_scenario_prints_its_three_targets(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = _tiny(admin_database_url, redis_url, tmp_path)
    report = discover()["detection"].run(ctx)
    assert [t.name for t in report.targets] == [
        "scoring points/s per core (best batch)",
        "MTTA/MTTR end to end (median)",
        "similar top-5 p99",
    ]
    assert all(t.measured > 0 for t in report.targets)
    titles = [s.title for s in report.sections]
    assert f"MTTA/MTTR summary over {TINY.seed_rows:,} incidents" in titles
    text = report.render()
    for t in report.targets:
        assert t.verdict() in text
    assert asyncio.run(_remaining(admin_database_url, ctx)) == set()


def test_ingest_scenario_measures_latency_then_capacity(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = _tiny(admin_database_url, redis_url, tmp_path)
    report = discover()["ingest"].run(ctx)

    closed, latency = report.sections
    assert [r[0] for r in closed.rows] == ["1", "10", "100"]
    for row in closed.rows:
        assert float(row[2]) > 0  # alerts/s
        assert row[6] == "0"  # no errors
        assert float(row[7]) > 0  # raw upsert ceiling
    [row] = latency.rows
    assert row[0] == "2500"
    assert row[1].endswith("x")  # offered / measured capacity
    assert int(row[2]) == 26  # every scheduled request of 1 s at 25 payloads/s answered
    assert row[6] == "0"
    assert [t.name for t in report.targets] == [
        "alerts/s, 100-alert payloads, one worker",
        "p99 at 2500 alerts/s (100-alert payloads)",
    ]
    assert asyncio.run(_remaining(admin_database_url, ctx)) == set()


def test_observability_scenario_compares_traced_with_plain(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ctx = _tiny(admin_database_url, redis_url, tmp_path)
    report = discover()["observability"].run(ctx)
    rows = report.sections[0].rows
    assert [r[0] for r in rows] == ["observed", "plain", "unsampled", "sampled", "metrics"]
    assert all(float(r[1]) > 0 for r in rows)
    assert any("spans received" in note for note in report.sections[0].notes)
    # the decomposition of the observed server's extra CPU (psutil reads it here)
    parts = report.sections[1]
    assert parts.rows[0][0].startswith("plain")
    assert float(parts.rows[0][1]) > 0
    assert len(parts.rows) == 7
    assert any(re.search(r"^ceiling .* = \d+\.\d\dx; a best case", n) for n in parts.notes)
    # the export encoders compared on the same spans: both measured, the SDK is the 1.00x
    encoding = report.sections[2]
    assert [r[0] for r in encoding.rows] == ["SDK encoder", "firewatch encoder"]
    assert all(float(r[1]) > 0 for r in encoding.rows)
    assert encoding.rows[0][2] == "1.00x"
    assert [t.name for t in report.targets] == ["tracing 10% + metrics / both off (GET incident)"]
    assert report.targets[0].measured > 0
    assert asyncio.run(_remaining(admin_database_url, ctx)) == set()


def test_keyset_scenario_measures_every_page_kind(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # every filtered page must fill its 50 rows, deep pages included
    ctx = replace(
        _tiny(admin_database_url, redis_url, tmp_path), knobs=replace(TINY, seed_rows=20_000)
    )
    report = discover()["keyset"].run(ctx)
    pages = [r[0] for r in report.sections[0].rows]
    assert "first page" in pages
    assert "deep page (cursor, 90% in)" in pages
    assert len(report.targets) == len(pages)
    assert all(t.measured > 0 for t in report.targets)
    assert asyncio.run(_remaining(admin_database_url, ctx)) == set()


def _inprocess(*args: str) -> list[str]:
    """``python -m bench.inprocess *args`` on the test servers: its output lines."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_inprocess_measures_every_configuration() -> None:
    """``python -m bench.inprocess``: each configuration in its own process, on the
    test servers (the bench falls back to them), a figure per configuration."""
    lines = _inprocess("--requests", "20", "--rounds", "1", "--configs", "minimal,plain,tracing-10")
    assert lines[0].startswith("in-process CPU us per GET incident")
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in lines[1:]}
    assert set(figures) == {"minimal", "plain", "tracing-10"}
    assert all(v > 0 for v in figures.values())


def test_inprocess_counts_the_opcodes_a_configuration_adds() -> None:
    """``python -m bench.inprocess --opcodes``: bytecodes per request, exact: tracing on
    (nothing sampled) executes more than both off, and its own functions say where."""
    lines = _inprocess(
        "--opcodes", "--requests", "20", "--configs", "plain,tracing-off", "--top", "5"
    )
    assert lines[0].startswith("opcodes per GET incident")
    totals = {ln.split()[0]: float(ln.split()[1]) for ln in lines[1:] if "opcodes" in ln}
    assert set(totals) == {"plain", "tracing-off"}
    assert totals["tracing-off"] > totals["plain"] > 1000
    listed = [ln.split()[-1] for ln in lines if ln.startswith("      ")]
    assert 0 < len(listed) <= 5
    assert any("firewatch/observability/tracing.py:" in where for where in listed)


def test_redis_call_compares_redis_py_with_the_mux(redis_url: str) -> None:
    """``python -m bench.redis_call`` (ADR-008): a figure for each way, on the test Redis;
    the keys it wrote are gone after."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.redis_call", "--calls", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "FIREWATCH_BENCH_REDIS_URL": redis_url},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU us per EVALSHA of the auth script")
    figures = {ln.split()[0]: float(ln.split()[1]) for ln in lines[1:]}
    assert set(figures) == {"redis-py", "redis_mux"}
    assert all(v > 0 for v in figures.values())
    assert redis_sync.Redis.from_url(redis_url).exists("fw:bench:rl") == 0


def _stat(*rps: float) -> harness.Stat:
    return harness.Stat([harness.WrkResult(int(r * 5), 5.0, 1.0, 1.0, 1.0, 1.0, 0) for r in rps])


def test_paired_ratio_compares_stacks_round_by_round() -> None:
    """A host that slows down for one round (the second, here) shifts the plain ratio
    of the medians, which pairs the stacks' different rounds; the per-round median
    does not."""
    a = _stat(1100, 1200, 1900)
    b = _stat(1150, 1800, 1850)
    assert harness.ratio(a.rps, b.rps) == pytest.approx(1200 / 1800)
    assert harness.paired_ratio(a, b) == pytest.approx(1100 / 1150)
    assert harness.ratio_note(a, b) == "rounds 0.96 0.67 1.03; of medians 0.67"
    with pytest.raises(ValueError, match=r"shorter|longer"):
        harness.paired_ratio(a, _stat(1000, 1000))


def test_settle_waits_for_a_busy_process_tree_and_not_for_an_idle_one() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # a parent that sleeps while its child spins for ~2 s: the tree is busy
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'import time\\nend = time.monotonic() + 2\\nwhile time.monotonic() < end: pass'])\n"
            "child.wait(); time.sleep(30)",
        ]
    )
    try:
        time.sleep(0.3)  # both started (the busy child is spinning)
        assert harness.settle(idle.pid) < 1.0
        waited = harness.settle(busy.pid)
        assert 1.0 <= waited < harness.SETTLE_TIMEOUT
        assert harness.settle(busy.pid) < 1.0  # its child is done: settled at once
    finally:
        for proc in (idle, busy):
            proc.kill()
            proc.wait()


def test_a_warm_up_is_followed_by_its_loads_wait_like_a_round(
    admin_database_url: str, tmp_path: Path
) -> None:
    """Work a load leaves behind (``Load.after``) is waited for after its warm-up too,
    so that the first round does not pay for the warm-up's."""
    with harness.throwaway_database(admin_database_url, "smoke") as url:
        spec = harness.baseline_server("minimal", "bench.baselines.minimal:create_app", url)
        seed.create_baseline_table(url)
        with harness.serve(spec, tmp_path) as server:
            create = harness.Load("create", "POST", "/incidents", BODY, after=5.0)
            start = time.monotonic()
            stats = harness.alternate(
                [harness.Stack(server, [create])], rounds=1, duration=0.5, connections=1, warmup=0.3
            )
            elapsed = time.monotonic() - start
    [result] = stats[("minimal", "create")].rounds
    assert result.deferred_cpu_s is not None
    # two waits of 5 s (the warm-up's and the round's) besides the loads themselves;
    # without the warm-up's wait it is one wait and the loads (8.1 s)
    assert elapsed >= 2 * 5.0 + 0.3 + 0.5
