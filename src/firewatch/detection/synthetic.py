"""Reproducible synthetic metric streams with labelled anomalies (tests, eval, bench).

A stream is a level plus daily seasonality plus Gaussian noise, one point every
``step_seconds``. Anomalies are injected into the test part only:

- ``spike``: 3 consecutive points at +/- ``8 sigma``
- ``level_shift``: 40 points shifted by ``5 sigma``
- ``slow_drift``: a ramp to ``6 sigma`` over 120 points, held for 40
- ``seasonality``: the daily pattern itself, with noise, is the normal case every
  detector must not alarm on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firewatch.detection.features import FloatArray

KINDS = ("spike", "level_shift", "slow_drift")
LENGTHS = {"spike": 3, "level_shift": 40, "slow_drift": 160}


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str
    start: int  # index into the test part
    end: int  # exclusive


@dataclass(frozen=True, slots=True)
class Stream:
    train_values: FloatArray
    train_epochs: FloatArray
    test_values: FloatArray
    test_epochs: FloatArray
    labels: np.ndarray[Any, np.dtype[np.bool_]]
    segments: list[Segment] = field(default_factory=list)


def stream(
    seed: int,
    *,
    train_points: int = 4032,
    test_points: int = 4032,
    step_seconds: int = 300,
    anomalies_per_kind: int = 3,
    start_epoch: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
) -> Stream:
    rng = np.random.default_rng(seed)
    level = float(rng.uniform(10, 1000))
    sigma = level * float(rng.uniform(0.01, 0.05))
    amplitude = sigma * float(rng.uniform(0.0, 4.0))  # seasonality up to 4 sigma
    total = train_points + test_points
    epochs = start_epoch + step_seconds * np.arange(total, dtype=np.float64)
    phase = 2 * np.pi * ((epochs % 86400) / 86400)
    values = level + amplitude * np.sin(phase) + rng.normal(0, sigma, total)
    test = values[train_points:].copy()
    labels = np.zeros(test_points, dtype=bool)
    segments: list[Segment] = []
    slots = [k for k in KINDS for _ in range(anomalies_per_kind)]
    rng.shuffle(slots)
    gap = test_points // (len(slots) + 1)
    for i, kind in enumerate(slots):
        start = gap * (i + 1) + int(rng.integers(-gap // 4, gap // 4))
        length = LENGTHS[kind]
        end = min(start + length, test_points)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "spike":
            test[start:end] += sign * 8 * sigma
        elif kind == "level_shift":
            test[start:end] += sign * 5 * sigma
        else:
            ramp = np.minimum(np.arange(end - start) / 120.0, 1.0)
            test[start:end] += sign * 6 * sigma * ramp
        labels[start:end] = True
        segments.append(Segment(kind, start, end))
    return Stream(
        train_values=values[:train_points],
        train_epochs=epochs[:train_points],
        test_values=test,
        test_epochs=epochs[train_points:],
        labels=labels,
        segments=sorted(segments, key=lambda s: s.start),
    )
