"""What a scenario gets: the servers, a scratch dir, the run's knobs, and helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness


@dataclass(frozen=True)
class Knobs:
    """Run-wide settings (``python -m bench.run --help``); tests shrink them."""

    duration: float = 5.0  # seconds per wrk round
    rounds: int = 3  # alternating rounds per stack
    connections: int = 16
    threads: int = 1
    warmup: float = 2.0
    seed_rows: int = 1_000_000  # keyset scenario
    get_rows: int = 10_000  # rows each stack holds for GET rounds
    latency_duration: float = 5.0  # seconds per latency probe (1 connection)
    start_repeats: int = 2  # cold and warm starts each


@dataclass(frozen=True)
class BenchContext:
    backends: harness.Backends
    workdir: Path
    knobs: Knobs
    quiet: bool = False
    #: URLs of the throwaway databases this context created (each dropped on exit)
    created: list[str] = field(default_factory=list)

    def progress(self, message: str) -> None:
        if not self.quiet:
            print(f"  .. {message}", file=sys.stderr, flush=True)

    @contextmanager
    def database(self, label: str) -> Iterator[str]:
        """A throwaway database (dropped at the end) on the bench PostgreSQL."""
        with harness.throwaway_database(self.backends.admin_database_url, label) as url:
            self.created.append(url)
            yield url

    def data_dir(self, label: str) -> Path:
        path = self.workdir / f"data-{label}"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @contextmanager
    def firewatch(
        self, database_url: str, *, name: str = "firewatch", env: dict[str, str] | None = None
    ) -> Iterator[harness.RunningServer]:
        spec = harness.firewatch_server(
            database_url, self.backends.redis_url, self.data_dir(name), name=name, env=env
        )
        with harness.serve(spec, self.workdir) as server:
            yield server

    @contextmanager
    def baseline(
        self, name: str, factory: str, database_url: str
    ) -> Iterator[harness.RunningServer]:
        with harness.serve(harness.baseline_server(name, factory, database_url), self.workdir) as s:
            yield s

    def alternate(self, stacks: list[harness.Stack]) -> dict[tuple[str, str], harness.Stat]:
        k = self.knobs
        return harness.alternate(
            stacks,
            rounds=k.rounds,
            duration=k.duration,
            connections=k.connections,
            threads=k.threads,
            warmup=k.warmup,
            progress=self.progress,
        )
