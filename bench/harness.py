"""The bench machinery: servers, throwaway databases, wrk rounds, medians, a table.

Scenario modules (bench/scenarios/*.py) use only what is here:

- :func:`backends` resolves PostgreSQL and Redis (env, else the usual local ports,
  else embedded servers) and :func:`throwaway_database` makes a database of ours.
- :func:`serve` runs one HTTP server process (firewatch or a baseline) on a free
  loopback port and stops it; :func:`firewatch_server` and :func:`baseline_server`
  build the specs.
- :func:`run_wrk` drives one :class:`Load` with wrk from a separate process and
  returns a :class:`WrkResult`; :func:`alternate` runs several stacks round-robin
  (A, B, C, A, B, C, ...) because this host drifts by +-30% from minute to minute,
  and keeps every round so :class:`Stat` can report medians.
- :class:`Report` collects rows and targets and prints them (PASS/MISS is computed
  from the measured value, never assumed).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from bench import auth

REPO_ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "request.lua"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DATABASE_PREFIX = "fw_bench_"


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Backends:
    """Where the bench may create databases, and the Redis firewatch uses."""

    admin_database_url: str
    redis_url: str
    source: str  # "env", "local" or "embedded": printed with the results


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "unix" or not parts.hostname:
        return True
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def backends(tmp: Path) -> Iterator[Backends]:
    """PostgreSQL and Redis from FIREWATCH_BENCH_* (or FIREWATCH_TEST_*), else the usual
    127.0.0.1 ports when something listens there, else embedded servers in ``tmp``."""
    from firewatch.runtime.embedded import EmbeddedPostgres, EmbeddedRedis

    db = os.environ.get("FIREWATCH_BENCH_DATABASE_URL") or os.environ.get(
        "FIREWATCH_TEST_DATABASE_URL"
    )
    rd = os.environ.get("FIREWATCH_BENCH_REDIS_URL") or os.environ.get("FIREWATCH_TEST_REDIS_URL")
    sources = {"env" if db else "", "env" if rd else ""}
    with ExitStack() as stack:
        if not db:
            if _reachable(DEFAULT_DATABASE_URL):
                db = DEFAULT_DATABASE_URL
                sources.add("local")
            else:
                pg = EmbeddedPostgres(tmp / "embedded")
                db = pg.start()
                stack.callback(pg.stop)
                sources.add("embedded")
        if not rd:
            parts = urlsplit(DEFAULT_REDIS_URL)
            if _reachable(f"redis://{parts.hostname}:{parts.port}"):
                rd = DEFAULT_REDIS_URL
                sources.add("local")
            else:
                er = EmbeddedRedis(tmp / "embedded")
                rd = er.start()
                stack.callback(er.stop)
                sources.add("embedded")
        yield Backends(db, rd, "+".join(sorted(s for s in sources if s)))


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (unix-socket URLs included)."""
    parts = urlsplit(url)
    if parts.query and "dbname=" in parts.query:
        query = "&".join(
            f"dbname={name}" if p.startswith("dbname=") else p for p in parts.query.split("&")
        )
        return urlunsplit(parts._replace(query=query))
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin_execute(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def throwaway_database(admin_url: str, label: str) -> Iterator[str]:
    """A new database named fw_bench_<label>_<random>, dropped (forcibly) at the end.

    Only databases this function created are ever dropped.
    """
    if not label.isidentifier() or len(label) > 20:
        raise ValueError(f"database label must be a short identifier, not {label!r}")
    name = f"{DATABASE_PREFIX}{label.lower()}_{secrets.token_hex(4)}"
    asyncio.run(_admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    url = with_database(admin_url, name)
    try:
        yield url
    finally:
        asyncio.run(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        auth.forget(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerSpec:
    """How to run one HTTP server: argv gets the port through ``{port}`` or env PORT."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/healthz"
    ready_timeout: float = 90.0


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_for_200(
    url: str, process: subprocess.Popen[bytes] | None, timeout: float, interval: float = 0.05
) -> float:
    """Poll ``url`` until it answers 200; returns the monotonic time it first did."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited early with status {process.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(interval)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's env minus FIREWATCH_* (a server gets exactly what the spec says)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")}
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve(spec: ServerSpec, workdir: Path) -> Iterator[RunningServer]:
    """Start the server on a free 127.0.0.1 port, wait for 200 on its ready path, stop it."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in spec.argv]
    env = _clean_env({k: v.replace("{port}", str(port)) for k, v in spec.env.items()})
    log_path = workdir / f"{spec.name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    running = RunningServer(spec, process, f"http://127.0.0.1:{port}", log_path)
    try:
        try:
            wait_for_200(running.base_url + spec.ready_path, process, spec.ready_timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{spec.name} did not start: {exc}\n{running.log_tail()}") from exc
        yield running
    finally:
        stop_process(process)


def firewatch_server(
    database_url: str,
    redis_url: str,
    data_dir: Path,
    *,
    name: str = "firewatch",
    env: Mapping[str, str] | None = None,
) -> ServerSpec:
    """``firewatch serve`` with one uvicorn worker, configured as the image runs it."""
    return ServerSpec(
        name=name,
        argv=(sys.executable, "-m", "firewatch", "serve"),
        env={
            "FIREWATCH_DATABASE_URL": database_url,
            "FIREWATCH_REDIS_URL": redis_url,
            "FIREWATCH_HOST": "127.0.0.1",
            "FIREWATCH_PORT": "{port}",
            "FIREWATCH_WORKERS": "1",
            "FIREWATCH_DATA_DIR": str(data_dir),
            "FIREWATCH_LOG_FORMAT": "json",  # as the image runs it (Dockerfile)
            **auth.server_env(database_url),
            **(env or {}),
        },
        ready_path="/readyz",
    )


def baseline_server(name: str, factory: str, database_url: str) -> ServerSpec:
    """A baseline app under bench/baselines, served by uvicorn with one worker."""
    return ServerSpec(
        name=name,
        argv=(
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ),
        env={"BENCH_DATABASE_URL": database_url},
    )


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Load:
    """One request shape. ``path`` may hold ``{id}``: ids are then drawn from ``ids``."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    ids: tuple[int, int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds to wait after this load, then settle, before the next one: work the load
    #: leaves for later (firewatch's suggester scores new incidents on its next run, up
    #: to 10 s away) then runs outside every measured round. The server's CPU meanwhile
    #: is recorded as the load's deferred CPU (:attr:`Stat.deferred_us_per_request`).
    after: float = 0.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors plus HTTP status >= 400
    server_cpu_s: float | None = None  # CPU (user+sys) the server process spent meanwhile
    deferred_cpu_s: float | None = None  # ... and in the ``Load.after`` wait that followed

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or self.requests == 0:
            return None
        return self.server_cpu_s * 1e6 / self.requests


class LoadError(RuntimeError):
    """wrk saw errors: the figure would be meaningless, so the bench stops."""


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except psutil.Error:
        return None


def debian_binary(name: str) -> str:
    """``name`` on PATH; installed from the Debian package of that name when missing
    and we are root."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"bench: installing {name} (apt-get install -y {name})", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", name],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"{name} is not installed (apt-get install {name})")


def wrk_binary() -> str:
    """wrk on PATH; installed from Debian when missing and we are root."""
    return debian_binary("wrk")


def run_wrk(
    base_url: str,
    load: Load,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    allow_errors: bool = False,
    server_pid: int | None = None,
) -> WrkResult:
    """Drive ``load`` against ``base_url`` (127.0.0.1 only) for ``duration`` seconds.

    With ``server_pid``, the CPU time that process (and its children) spent during the
    run is recorded too: CPU per request drifts far less than req/s on a shared host.
    """
    if urlsplit(base_url).hostname != "127.0.0.1":
        raise ValueError("the bench only loads servers on 127.0.0.1")
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as body_file:
        if load.body is not None:
            body_file.write(load.body)
    try:
        argv = [
            wrk_binary(),
            "-t",
            str(threads),
            "-c",
            str(max(connections, threads)),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            base_url,
            "--",
            load.method,
            load.path,
            body_file.name if load.body is not None else "-",
            str(load.ids[0]) if load.ids else "-",
            str(load.ids[1]) if load.ids else "-",
            *(f"{k}: {v}" for k, v in load.headers.items()),
        ]
        cpu_before = _cpu_seconds(server_pid)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        cpu_after = _cpu_seconds(server_pid)
    finally:
        os.unlink(body_file.name)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            raw = json.loads(line.removeprefix("WRK_RESULT "))
            break
    else:
        raise LoadError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()}")
    errors = sum(
        raw[k]
        for k in (
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeout_errors",
        )
    )
    result = WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        errors=errors,
        server_cpu_s=(
            cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        ),
    )
    if result.errors and not allow_errors:
        raise LoadError(
            f"{load.name} against {base_url}: {result.errors} errors in {result.requests} "
            f"requests ({raw})"
        )
    if result.requests == 0:
        raise LoadError(f"{load.name} against {base_url}: no request completed")
    return result


@dataclass
class Stat:
    """Every round of one (stack, load) pair; figures are medians over rounds."""

    rounds: list[WrkResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [r.cpu_us_per_request for r in self.rounds]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    @property
    def deferred_us_per_request(self) -> float | None:
        """Median CPU per request the server's process tree spent after the rounds
        (``Load.after``): background work the requests caused."""
        known = [
            r.deferred_cpu_s / r.requests * 1e6
            for r in self.rounds
            if r.deferred_cpu_s is not None and r.requests
        ]
        return statistics.median(known) if known else None

    @property
    def max_p99_ms(self) -> float:
        return max(r.p99_ms for r in self.rounds)

    def rps_spread(self) -> str:
        values = sorted(r.rps for r in self.rounds)
        return f"{values[0]:.0f}..{values[-1]:.0f}"


@dataclass(frozen=True)
class Stack:
    """A running server and the loads to drive against it, in order, each round."""

    server: RunningServer
    loads: Sequence[Load]


#: A server is settled when its process tree used less than this share of one core
#: over :data:`SETTLE_WINDOW` seconds.
SETTLE_CPU_SHARE: Final = 0.05
SETTLE_WINDOW: Final = 0.5
SETTLE_TIMEOUT: Final = 120.0


def settle(pid: int, *, timeout: float = SETTLE_TIMEOUT) -> float:
    """Wait until the server ``pid`` and its children are idle; return the seconds waited.

    Work a load leaves running (spans still being exported, a suggester batch in
    progress) would otherwise be charged to the next load and compete with it for the
    cores. It cannot see work that has not started: firewatch's similar-incident
    suggester (a child process of ``serve``) wakes every 10 s, so the incidents of a
    create round can still be scored during the next round, firewatch's own GET
    (:func:`alternate` settles every server of the comparison before each load, so
    such work cannot run in another stack's round unless it outlasts ``timeout``).
    A server without background work (the baselines) is idle at once. Gives up after
    ``timeout`` seconds: 30 s was too short once the suggester scored every incident
    of a create round, not 100 per wake (2026-11-28).
    """
    start = time.monotonic()
    before = _cpu_seconds(pid)
    while before is not None and time.monotonic() - start < timeout:
        time.sleep(SETTLE_WINDOW)
        after = _cpu_seconds(pid)
        if after is None or after - before < SETTLE_CPU_SHARE * SETTLE_WINDOW:
            break
        before = after
    return time.monotonic() - start


def _wait_after(pid: int, load: Load) -> float | None:
    """Wait ``load.after`` seconds, then for ``pid``'s tree to settle; the CPU seconds
    it spent meanwhile (None when there is no wait or the process is gone)."""
    if load.after <= 0:
        return None
    before = _cpu_seconds(pid)
    time.sleep(load.after)
    settle(pid)
    spent = _cpu_seconds(pid)
    if before is None or spent is None:
        return None
    return spent - before


def alternate(
    stacks: Sequence[Stack],
    *,
    rounds: int,
    duration: float,
    connections: int,
    threads: int = 1,
    warmup: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> dict[tuple[str, str], Stat]:
    """Rounds over the stacks, in order then reversed: A B C, C B A, A B C, ...

    Each server is warmed up first (results discarded) so connection pools and
    statement caches are filled before anything is recorded (a warm-up load is
    followed by its ``Load.after`` wait, as in a round), and every load waits
    for its server to settle (:func:`settle`). Reversing the order every
    other round puts each stack first as often as last, so a host that speeds up or
    slows down during a round does not favour one side of a comparison
    (:func:`paired_ratio` compares the stacks round by round).
    """
    stats: dict[tuple[str, str], Stat] = {}
    if warmup > 0:
        for stack in stacks:
            for load in stack.loads:
                try:
                    run_wrk(
                        stack.server.base_url,
                        load,
                        duration=warmup,
                        connections=connections,
                        threads=threads,
                    )
                except LoadError as exc:
                    raise LoadError(f"{exc}\n{stack.server.log_tail()}") from None
                # the work a warm-up leaves (the suggester scoring its incidents) is not
                # the first round's, as it is not the next round's after a measured load
                _wait_after(stack.server.process.pid, load)
    for n in range(rounds):
        for stack in stacks if n % 2 == 0 else list(reversed(stacks)):
            for load in stack.loads:
                # every server of the comparison, not just this load's: work one left
                # running (firewatch's suggester scoring the incidents of a create round)
                # must not be charged to another stack's round
                for other in stacks:
                    waited = settle(other.server.process.pid)
                    if progress and waited >= 1.0:
                        progress(f"{other.server.name}: waited {waited:.1f}s for it to settle")
                try:
                    result = run_wrk(
                        stack.server.base_url,
                        load,
                        duration=duration,
                        connections=connections,
                        threads=threads,
                        server_pid=stack.server.process.pid,
                    )
                except LoadError as exc:
                    raise LoadError(f"{exc}\n{stack.server.log_tail()}") from None
                deferred = _wait_after(stack.server.process.pid, load)
                if deferred is not None:
                    result = replace(result, deferred_cpu_s=deferred)
                stats.setdefault((stack.server.name, load.name), Stat()).rounds.append(result)
                if progress:
                    progress(
                        f"round {n + 1}/{rounds} {stack.server.name:<10} {load.name:<14} "
                        f"{result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms  "
                        f"cpu {result.cpu_us_per_request or 0:5.0f} us/req"
                    )
    return stats


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Target:
    """A target checked against a measured value; ``at_least`` false means "below"."""

    name: str
    measured: float
    threshold: float
    at_least: bool
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.at_least:
            return self.measured >= self.threshold
        return self.measured < self.threshold

    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


@dataclass
class Section:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What a scenario measured: tables, targets, notes; printed and saved as JSON."""

    scenario: str
    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def section(self, title: str, header: Sequence[str]) -> Section:
        sec = Section(title, tuple(header))
        self.sections.append(sec)
        return sec

    def target(
        self,
        name: str,
        measured: float,
        threshold: float,
        *,
        at_least: bool,
        unit: str = "",
        note: str = "",
    ) -> Target:
        t = Target(name, measured, threshold, at_least, unit, note)
        self.targets.append(t)
        return t

    def render(self) -> str:
        out: list[str] = []
        for sec in self.sections:
            out.append(f"\n== {self.scenario}: {sec.title}")
            out.extend(_table(sec.header, sec.rows))
            out.extend(f"   {n}" for n in sec.notes)
        if self.targets:
            out.append(f"\n== {self.scenario}: targets")
            rows = [
                (
                    t.name,
                    f"{t.measured:.2f}{t.unit}",
                    f"{'>=' if t.at_least else '<'} {t.threshold:g}{t.unit}",
                    t.verdict(),
                    t.note,
                )
                for t in self.targets
            ]
            out.extend(_table(("target", "measured", "wanted", "", "note"), rows))
        return "\n".join(out)

    def as_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "sections": [
                {"title": s.title, "header": s.header, "rows": s.rows, "notes": s.notes}
                for s in self.sections
            ],
            "targets": [
                {
                    "name": t.name,
                    "measured": t.measured,
                    "threshold": t.threshold,
                    "at_least": t.at_least,
                    "unit": t.unit,
                    "verdict": t.verdict(),
                    "note": t.note,
                }
                for t in self.targets
            ],
        }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "   " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def paired_ratio(a: Stat, b: Stat) -> float:
    """req/s of ``a`` over ``b``: the median of the per-round ratios.

    The rounds of one comparison run back to back (:func:`alternate`), so within a
    round both stacks see the same host; across rounds the host drifts (on the 2-core
    VM one server's CPU per request went from 839 to 521 µs between rounds). The ratio
    of the two medians can pair a fast round of one stack with a slow round of the
    other; the median of the per-round ratios does not.
    """
    return statistics.median(ratio(x.rps, y.rps) for x, y in zip(a.rounds, b.rounds, strict=True))


def ratio_note(a: Stat, b: Stat) -> str:
    """How :func:`paired_ratio` was reached: each round's ratio, and the plain ratio of
    the medians beside it."""
    rounds = " ".join(f"{ratio(x.rps, y.rps):.2f}" for x, y in zip(a.rounds, b.rounds, strict=True))
    return f"rounds {rounds}; of medians {ratio(a.rps, b.rps):.2f}"
