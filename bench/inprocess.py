"""CPU per request of the whole app called in-process: no HTTP, no wrk, no other server.

``python -m bench.inprocess [--requests N] [--rounds R] [--post]`` seeds a throwaway
database (the bench's servers, see README), then for each configuration builds the
app as a worker does (``app_from_env`` in a fresh process), runs its lifespan, and
calls the ASGI app directly N times per round (on uvloop, as uvicorn serves) with an
admin token, timing the process's CPU (``time.process_time``: this process only,
PostgreSQL and Redis are not in it). It prints the best round per configuration,
beside the minimal app's (``bench/baselines/minimal.py``) on the same database. Far
steadier than req/s under load, and what py-spy
(``py-spy record -f raw -- python -m bench.inprocess``) should profile when a request
got slower.

Configurations: ``minimal``, ``plain`` (tracing and metrics off), ``metrics``,
``tracing-off`` (SDK on, ``always_off`` sampler), ``tracing-10`` (10%), ``tracing-all``
and ``observed`` (10% and metrics, as the observability scenario's server). Metrics
are kept in memory-mapped files, as under ``firewatch serve``; spans go to a real
OTLP/gRPC receiver started here.

``--instructions`` counts instructions per request instead (valgrind's callgrind, see
bench/instructions.py): each configuration runs twice, ``--requests`` apart, and the
difference is divided by ``--requests``. Counts of the same code agree to within
~1-2%, where CPU time moves by 10-30% on this host: the way to size a change of a few
per cent (not one of under 2%).

``--opcodes`` counts the Python bytecodes each request executes on the event loop's
thread (``sys.settrace``), per configuration and per function against the first
configuration (``--top``): exact (the same code gives the same count), so it sizes
and places differences far below callgrind's 1-2%, but it sees neither the cost of C
code nor other threads (the span exporter's).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import auth, harness, seed

ROWS = 10_000
WARMUP = 300  # requests before the measured rounds
BODY = (
    b'{"title":"Feature drift on checkout-ranker","severity":"SEV2",'
    b'"category":"data_drift","service":"checkout-ranker","labels":{"env":"prod"}}'
)
CONFIGS: dict[str, dict[str, str]] = {
    "plain": {"OTEL_SDK_DISABLED": "true", "FIREWATCH_METRICS_ENABLED": "false"},
    "metrics": {"OTEL_SDK_DISABLED": "true", "FIREWATCH_METRICS_ENABLED": "true"},
    "tracing-off": {"OTEL_TRACES_SAMPLER": "always_off", "FIREWATCH_METRICS_ENABLED": "false"},
    "tracing-10": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "FIREWATCH_METRICS_ENABLED": "false",
    },
    "tracing-all": {"OTEL_TRACES_SAMPLER": "always_on", "FIREWATCH_METRICS_ENABLED": "false"},
    # What the observability scenario's "observed" server runs.
    "observed": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "FIREWATCH_METRICS_ENABLED": "true",
    },
}


async def _measure(
    app: Any,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    post: bool,
    requests: int,
    rounds: int,
    opcodes: dict[str, list[float]] | None = None,
) -> list[float]:
    """CPU microseconds per request of ``rounds`` rounds of ``requests`` calls; with
    ``opcodes``, one round whose executed bytecodes are counted into it instead
    (function -> [opcodes per request, calls per request], see :class:`_Opcodes`)."""
    method = "POST" if post else "GET"
    extra = [(b"content-type", b"application/json")] if post else []

    async def one(i: int) -> None:
        target = path if post else path.format(id=1 + i % ROWS)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), *headers, *extra],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY if post else b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        await app(scope, receive, send)
        if not sent or sent[0] >= 400:
            raise RuntimeError(f"{method} {target} answered {sent}")

    for i in range(min(WARMUP, requests)):  # warm-up: caches, statement cache, pool
        await one(i)
    if opcodes is not None:
        counter = _Opcodes()
        sys.settrace(counter.call)
        try:
            for i in range(requests):
                await one(i)
        finally:
            sys.settrace(None)
        opcodes.update(counter.per_request(requests))
        return []
    out = []
    for _ in range(rounds):
        start = time.process_time()
        for i in range(requests):
            await one(i)
        out.append((time.process_time() - start) / requests * 1e6)
    return out


class _Opcodes:
    """Bytecodes executed per code object, counted with ``sys.settrace`` (opcode
    events) on this thread: the same requests execute the same opcodes whatever the
    host's speed, so two configurations' counts differ by what their code does, to
    the opcode (a C call counts as the one opcode that calls it; other threads, such
    as the span exporter's, are not in it)."""

    def __init__(self) -> None:
        self.opcodes: collections.Counter[Any] = collections.Counter()
        self.calls: collections.Counter[Any] = collections.Counter()

    def call(self, frame: Any, event: str, _arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            self.calls[frame.f_code] += 1
            return self.opcode
        return None

    def opcode(self, frame: Any, event: str, _arg: Any) -> Any:
        if event == "opcode":
            self.opcodes[frame.f_code] += 1
        return self.opcode

    def per_request(self, requests: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for code, count in self.opcodes.items():
            where = code.co_filename.split("site-packages/")[-1].split("/src/")[-1]
            key = f"{where}:{code.co_qualname}"
            ops, calls = out.get(key, [0.0, 0.0])
            out[key] = [ops + count / requests, calls + self.calls[code] / requests]
        return out


async def _child(
    config: str,
    post: bool,
    requests: int,
    rounds: int,
    opcodes: dict[str, list[float]] | None = None,
) -> list[float]:
    if config == "minimal":
        from bench.baselines.minimal import create_app

        app: Any = create_app()
        path, headers = ("/incidents" if post else "/incidents/{id}"), []
    else:
        from firewatch.app import app_from_env

        app = app_from_env()
        path = "/api/v1/incidents" if post else "/api/v1/incidents/INC-{id}"
        headers = [(b"authorization", os.environ["BENCH_AUTHORIZATION"].encode())]
    async with app.router.lifespan_context(app):
        return await _measure(
            app, path, headers, post=post, requests=requests, rounds=rounds, opcodes=opcodes
        )


def _child_argv(
    config: str, requests: int, rounds: int, post: bool, *, opcodes: bool = False
) -> list[str]:
    argv = [sys.executable, "-m", "bench.inprocess", "--child", config]
    argv += ["--requests", str(requests), "--rounds", str(rounds)]
    argv += ["--post"] if post else []
    return [*argv, "--opcodes"] if opcodes else argv


def _config_env(config: str, base: dict[str, str], data: str) -> dict[str, str]:
    env = {**base, **CONFIGS.get(config, {})}
    if env.get("FIREWATCH_METRICS_ENABLED") == "true":
        # As ``firewatch serve`` does: metrics in memory-mapped files.
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"prometheus-{config}-", dir=data)
    return env


def _run_child(argv: list[str], config: str, base: dict[str, str], data: str) -> Any:
    """The JSON a child printed last, or None (its error output printed) if it failed."""
    done = subprocess.run(
        argv, env=_config_env(config, base, data), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu(configs: list[str], base: dict[str, str], data: str, args: argparse.Namespace) -> int:
    what = "create" if args.post else "GET incident"
    print(
        f"in-process CPU us per {what}, best of {args.rounds} rounds "
        f"of {args.requests} (all rounds after the colon)"
    )
    for config in configs:
        cpu = _run_child(
            _child_argv(config, args.requests, args.rounds, args.post), config, base, data
        )
        if cpu is None:
            return 1
        rounds = " ".join(f"{c:.0f}" for c in cpu)
        print(f"  {config:<12} {min(cpu):6.0f} us   : {rounds}")
    return 0


def _instructions(
    configs: list[str], base: dict[str, str], data: str, args: argparse.Namespace
) -> int:
    """Each configuration run twice under callgrind, after the same warm-up, with
    ``--requests`` more requests the second time; the difference per request.
    The runs go side by side (one per core): a count does not depend on the timing."""
    from bench import instructions

    def run(config: str, requests: int) -> list[int]:
        out = Path(data) / f"callgrind-{config}-{requests}.out"
        argv = _child_argv(config, requests, 1, args.post)
        return instructions.count(argv, out=out, env=_config_env(config, base, data))

    what = "create" if args.post else "GET incident"
    print(
        f"instructions per {what} (valgrind callgrind; runs of {WARMUP} and "
        f"{WARMUP + args.requests} requests after a warm-up of {WARMUP}, the difference "
        f"per request), main thread and all threads, and main thread against {configs[0]}"
    )
    jobs = [(c, n) for c in configs for n in (WARMUP, WARMUP + args.requests)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: run(*job), jobs), strict=True))
    first: float | None = None
    for config in configs:
        main_thread, every_thread = instructions.per_unit(
            counts[(config, WARMUP)], counts[(config, WARMUP + args.requests)], args.requests
        )
        first = main_thread if first is None else first
        print(
            f"  {config:<12} {main_thread / 1000:8.1f} k   all threads "
            f"{every_thread / 1000:8.1f} k   {main_thread / first:6.3f}x"
        )
    return 0


def _opcodes(configs: list[str], base: dict[str, str], data: str, args: argparse.Namespace) -> int:
    """Opcodes per request of each configuration (:class:`_Opcodes`), against the
    first, and the ``--top`` functions whose counts differ most from its."""
    what = "create" if args.post else "GET incident"
    print(
        f"opcodes per {what} on the event loop's thread (sys.settrace; {args.requests} "
        f"requests after a warm-up of {WARMUP}), against {configs[0]}"
    )
    counts: dict[str, dict[str, list[float]]] = {}
    for config in configs:
        argv = _child_argv(config, args.requests, 1, args.post, opcodes=True)
        counted = _run_child(argv, config, base, data)
        if counted is None:
            return 1
        counts[config] = counted
    first = counts[configs[0]]
    total = sum(ops for ops, _calls in first.values())
    for config in configs:
        mine = counts[config]
        own = sum(ops for ops, _calls in mine.values())
        print(f"  {config:<12} {own:8.0f} opcodes   {own - total:+7.0f}   {own / total:6.3f}x")
        if config == configs[0] or args.top <= 0:
            continue
        deltas = sorted(
            (
                (mine.get(k, [0.0, 0.0])[0] - first.get(k, [0.0, 0.0])[0], k)
                for k in {*mine, *first}
            ),
            key=lambda item: -abs(item[0]),
        )
        for delta, key in deltas[: args.top]:
            if abs(delta) >= 0.5:
                calls = mine.get(key, [0.0, 0.0])[1]
                print(f"      {delta:+8.1f}  ({calls:5.2f} calls)  {key}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--post", action="store_true", help="create instead of GET")
    parser.add_argument("--configs", default="minimal," + ",".join(CONFIGS))
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request with valgrind's callgrind instead of timing "
        "CPU: within ~1-2%% between runs (takes minutes; use --requests 1000)",
    )
    parser.add_argument(
        "--opcodes",
        action="store_true",
        help="count the bytecodes each request executes on the event loop's thread "
        "(sys.settrace; exact, ~20x slower; use --requests 500)",
    )
    parser.add_argument(
        "--top", type=int, default=15, help="with --opcodes: functions listed per configuration"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one configuration, in a fresh process (settings, SDK, logging)
        import uvloop  # the event loop uvicorn serves on

        counted: dict[str, list[float]] | None = {} if args.opcodes else None
        cpu = uvloop.run(_child(args.child, args.post, args.requests, args.rounds, counted))
        print(json.dumps(cpu if counted is None else counted))
        return 0

    from tests.observability.otlp import OtlpReceiver

    receiver = OtlpReceiver(keep=False).start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="fw-inprocess-") as tmp,
            harness.backends(Path(tmp)) as backends,
            harness.throwaway_database(backends.admin_database_url, "inprocess") as db,
        ):
            seed.migrate_firewatch(db)
            seed.seed_incidents(db, ROWS)
            token = auth.api_headers(db)["Authorization"]
            with tempfile.TemporaryDirectory(prefix="fw-inprocess-data-") as data:
                base = {
                    **os.environ,
                    "FIREWATCH_DATABASE_URL": db,
                    "FIREWATCH_REDIS_URL": backends.redis_url,
                    "FIREWATCH_DATA_DIR": data,
                    "FIREWATCH_LOG_FORMAT": "json",
                    "FIREWATCH_SIMILAR_SUGGEST_INTERVAL": "0",
                    "BENCH_DATABASE_URL": db,
                    "BENCH_AUTHORIZATION": token,
                    "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                    "OTEL_EXPORTER_OTLP_INSECURE": "true",
                    **auth.server_env(db),
                }
                measure = _instructions if args.instructions else _opcodes if args.opcodes else _cpu
                return measure(args.configs.split(","), base, data, args)
    finally:
        receiver.stop()


if __name__ == "__main__":
    raise SystemExit(main())
