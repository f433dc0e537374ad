"""GET with a valid bearer token vs the same GET before authentication existed.

firewatch has no mode without authentication (by design: /api/v1 always needs a
bearer token), so "unauthenticated" cannot be the same build with auth switched
off. The honest baseline is firewatch as it was just before the security work
landed (git ref BENCH_AUTH_BASELINE_REF, default: the parent of the commit that
added authentication), exported with ``git archive`` into the scratch dir and run
from there against its own database. Both servers run side by side in alternating
rounds; the only code difference is the security commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import seed
from bench.auth import api_headers
from bench.context import BenchContext
from bench.harness import (
    REPO_ROOT,
    Load,
    Report,
    ServerSpec,
    Stack,
    paired_ratio,
    ratio_note,
    serve,
)
from bench.scenarios import scenario

# The commit whose parent is the last firewatch without authentication.
SECURITY_COMMIT = "2e6fa0d"


def _export(ref: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, "src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


@scenario("auth", "GET with a bearer token vs firewatch before authentication", order=15)
def run(ctx: BenchContext) -> Report:
    report = Report("auth")
    ref = os.environ.get("BENCH_AUTH_BASELINE_REF", f"{SECURITY_COMMIT}^")
    old_src = _export(ref, ctx.workdir / "preauth")
    rows = ctx.knobs.get_rows
    with ctx.database("auth") as new_db, ctx.database("preauth") as old_db:
        seed.migrate_firewatch(new_db)
        headers = api_headers(new_db)
        old_spec = ServerSpec(
            name="pre-auth",
            argv=(sys.executable, "-m", "firewatch", "serve"),
            env={
                "PYTHONPATH": str(old_src),
                "FIREWATCH_DATABASE_URL": old_db,
                "FIREWATCH_REDIS_URL": ctx.backends.redis_url,
                "FIREWATCH_HOST": "127.0.0.1",
                "FIREWATCH_PORT": "{port}",
                "FIREWATCH_WORKERS": "1",
                "FIREWATCH_DATA_DIR": str(ctx.data_dir("preauth")),
            },
            ready_path="/readyz",
        )
        with ctx.firewatch(new_db, name="with-auth") as new, serve(old_spec, ctx.workdir) as old:
            # The old server migrated its own database on start; seed both alike.
            for url in (new_db, old_db):
                seed.seed_incidents(url, rows)
            new_ids, old_ids = seed.id_range(new_db), seed.id_range(old_db)
            path = "/api/v1/incidents/INC-{id}"
            stats = ctx.alternate(
                [
                    Stack(new, [Load("get", "GET", path, ids=new_ids, headers=headers)]),
                    Stack(old, [Load("get", "GET", path, ids=old_ids)]),
                ]
            )
    k = ctx.knobs
    sec = report.section(
        f"GET /api/v1/incidents/INC-n, wrk {k.connections} connections, {k.rounds} "
        f"alternating rounds of {k.duration:g}s (medians)",
        ("stack", "req/s", "req/s per round", "p50 ms", "p99 ms", "server CPU us/req"),
    )
    for (stack, _), st in stats.items():
        cpu = st.cpu_us_per_request
        sec.rows.append(
            (
                stack,
                f"{st.rps:.0f}",
                st.rps_spread(),
                f"{st.p50_ms:.2f}",
                f"{st.p99_ms:.2f}",
                f"{cpu:.0f}" if cpu is not None else "-",
            )
        )
    sec.notes.append(
        f"pre-auth = firewatch at {ref} (git archive), loopback callers admitted without "
        "a token; with-auth = this checkout, admin JWT (verification cached, denylist and "
        "request budget checked in Redis per request)"
    )
    with_auth, pre_auth = stats[("with-auth", "get")], stats[("pre-auth", "get")]
    report.target(
        "authenticated GET / pre-auth GET",
        paired_ratio(with_auth, pre_auth),
        0.9,
        at_least=True,
        unit="x",
        note=ratio_note(with_auth, pre_auth),
    )
    return report
