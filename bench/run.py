"""``make bench``: run the registered scenarios and print their figures.

make bench                         # every default scenario (~10 minutes)
make bench BENCH=incidents,keyset  # a selection
python -m bench.run --list
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import harness
from bench.context import BenchContext, Knobs
from bench.scenarios import discover


def _parser() -> argparse.ArgumentParser:
    d = Knobs()
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenarios", nargs="*", help="scenario names (comma or space separated)")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds per wrk round")
    p.add_argument("--rounds", type=int, default=d.rounds, help="alternating rounds")
    p.add_argument("--connections", type=int, default=d.connections)
    p.add_argument("--threads", type=int, default=d.threads, help="wrk threads")
    p.add_argument("--warmup", type=float, default=d.warmup, help="seconds per warm-up run")
    p.add_argument(
        "--seed-rows", type=int, default=d.seed_rows, help="keyset and detection scenario rows"
    )
    p.add_argument("--get-rows", type=int, default=d.get_rows)
    p.add_argument("--latency-duration", type=float, default=d.latency_duration)
    p.add_argument("--start-repeats", type=int, default=d.start_repeats)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    registry = discover()
    if args.list:
        for sc in registry.values():
            flag = "" if sc.default else " (not in the default run)"
            print(f"{sc.name:<16} {sc.help}{flag}")
        return 0
    names = [n for a in args.scenarios for n in a.replace(",", " ").split()]
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(unknown)}; try --list", file=sys.stderr)
        return 2
    chosen = [registry[n] for n in names] if names else [s for s in registry.values() if s.default]
    knobs = Knobs(
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        threads=args.threads,
        warmup=args.warmup,
        seed_rows=args.seed_rows,
        get_rows=args.get_rows,
        latency_duration=args.latency_duration,
        start_repeats=args.start_repeats,
    )
    harness.wrk_binary()
    started = time.monotonic()
    results = []
    misses = 0
    with (
        tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp,
        harness.backends(Path(tmp)) as backends,
    ):
        print(
            f"firewatch bench {datetime.now(UTC):%Y-%m-%d %H:%M}Z on {platform.node()}, "
            f"{os.cpu_count()} cpus, servers: {backends.source}; "
            f"scenarios: {', '.join(s.name for s in chosen)}",
            flush=True,
        )
        ctx = BenchContext(backends, Path(tmp), knobs)
        for sc in chosen:
            t0 = time.monotonic()
            print(f"\n>> {sc.name}: {sc.help}", flush=True)
            report = sc.run(ctx)
            print(report.render(), flush=True)
            print(f"   ({sc.name} took {time.monotonic() - t0:.0f}s)", flush=True)
            misses += sum(not t.passed for t in report.targets)
            results.append(report.as_json())
    print(f"\nbench finished in {time.monotonic() - started:.0f}s; {misses} target(s) missed")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
