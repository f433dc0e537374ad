"""Benchmark scenarios. Every module in this package is imported by ``discover()``;
a module registers its scenario with ``@scenario(...)``. See bench/README.md."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from bench.context import BenchContext
from bench.harness import Report

Runner = Callable[[BenchContext], Report]


@dataclass(frozen=True)
class Scenario:
    name: str
    help: str
    run: Runner
    order: int  # lower runs first in a full `make bench`
    default: bool  # part of a plain `make bench`


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, help: str, *, order: int = 50, default: bool = True
) -> Callable[[Runner], Runner]:
    """Register ``fn`` as scenario ``name`` (``make bench BENCH=name``)."""

    def register(fn: Runner) -> Runner:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, help, fn, order, default)
        return fn

    return register


def discover() -> dict[str, Scenario]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))
