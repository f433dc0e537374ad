"""`make run` to first 200: cold (fresh data dir: initdb, migrations) and warm.

Runs the real `make run` (after install: the venv is up to date, so make only
checks its stamp) with no database or Redis URL, so firewatch starts its embedded
PostgreSQL and Redis in a fresh data directory. Time is measured from spawning
`make` to the first 200 from GET /readyz (PostgreSQL and Redis reachable; the
migrations have run before the server listens). Warm = the same data dir again.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import psutil

from bench.context import BenchContext
from bench.harness import REPO_ROOT, Report, free_port, wait_for_200
from bench.scenarios import scenario

COLD_TARGET_S = 15.0
WARM_TARGET_S = 5.0


def _stop(make: subprocess.Popen[bytes]) -> None:
    """SIGTERM the firewatch process under make (it stops its embedded servers)."""
    try:
        children = psutil.Process(make.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    servers = [c for c in children if "firewatch" in " ".join(c.cmdline())]
    for proc in servers[:1]:  # the outermost firewatch; it stops the rest
        proc.send_signal(signal.SIGTERM)
    try:
        make.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for proc in children:
            if proc.is_running():
                proc.kill()
        make.kill()
        make.wait()


def start_once(data_dir: Path, log_path: Path) -> float:
    """Seconds from `make run` to the first 200 on /readyz; the server is stopped after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    env.update(
        {
            "FIREWATCH_DATA_DIR": str(data_dir),
            "FIREWATCH_PORT": str(port),
            "FIREWATCH_HOST": "127.0.0.1",
            "FIREWATCH_WORKERS": "1",
            "XDG_RUNTIME_DIR": str(data_dir),
        }
    )
    make = shutil.which("make") or "make"
    with log_path.open("ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            [make, "-s", "--no-print-directory", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = wait_for_200(f"http://127.0.0.1:{port}/readyz", proc, timeout=120, interval=0.02)
    finally:
        _stop(proc)
    return ready - started


@scenario("startup", "cold and warm `make run` (embedded servers) to first 200", order=30)
def run(ctx: BenchContext) -> Report:
    report = Report("startup")
    cold: list[float] = []
    warm: list[float] = []
    for n in range(ctx.knobs.start_repeats):
        data_dir = ctx.workdir / f"startup-{n}"
        log_path = ctx.workdir / f"startup-{n}.log"
        cold.append(start_once(data_dir, log_path))
        ctx.progress(f"cold start {n + 1}: {cold[-1]:.2f}s")
        warm.append(start_once(data_dir, log_path))
        ctx.progress(f"warm start {n + 1}: {warm[-1]:.2f}s")
    sec = report.section(
        "`make run` to first 200 on /readyz (embedded PostgreSQL and Redis)",
        ("start", "runs (s)", "median s"),
    )
    sec.rows.append(
        (
            "cold (fresh data dir)",
            " ".join(f"{v:.2f}" for v in cold),
            f"{statistics.median(cold):.2f}",
        )
    )
    sec.rows.append(
        (
            "warm (same data dir)",
            " ".join(f"{v:.2f}" for v in warm),
            f"{statistics.median(warm):.2f}",
        )
    )
    report.target(
        "cold start", max(cold), COLD_TARGET_S, at_least=False, unit=" s", note="worst run"
    )
    report.target(
        "warm start", max(warm), WARM_TARGET_S, at_least=False, unit=" s", note="worst run"
    )
    return report
