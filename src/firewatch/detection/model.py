"""Pure rules of the signals feature: streams, batches, episodes, incident fields."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from firewatch.detection.anomaly import BoolArray
from firewatch.incidents.model import Category

STREAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
STREAM_NAME = re.compile(STREAM_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Point:
    stream: str
    ts: datetime
    value: float
    labels: dict[str, str] | None = None


def group_key(stream: str) -> str:
    """Anomaly incidents group by stream (source ``signals``): one open incident per
    stream."""
    return stream


def category_of(labels: dict[str, str]) -> str:
    """The incident category a stream's ``category`` label names (else ``other``)."""
    try:
        return Category(labels.get("category", "other")).value
    except ValueError:
        return Category.OTHER.value


def by_stream(points: list[Point]) -> dict[str, list[Point]]:
    """Group a batch per stream, each sorted by time (out-of-order input is fine)."""
    out: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        out[p.stream].append(p)
    return {name: sorted(pts, key=lambda p: p.ts) for name, pts in out.items()}


def duplicate_positions(points: list[Point]) -> list[int]:
    """Indexes (in the request) of points repeating an earlier (stream, ts)."""
    seen: set[tuple[str, datetime]] = set()
    dupes: list[int] = []
    for i, p in enumerate(points):
        key = (p.stream, p.ts)
        if key in seen:
            dupes.append(i)
        seen.add(key)
    return dupes


@dataclass(frozen=True, slots=True)
class Episodes:
    """What the alarms of one batch did to the stream's anomaly state."""

    started_at: list[int]  # positions where an episode began
    in_anomaly: bool  # state after the batch


def episodes(
    alarms: BoolArray, flags: BoolArray, previous: BoolArray, n: int, in_anomaly: bool
) -> Episodes:
    """An episode starts at the first alarm while not in one, and ends once the last
    ``n`` flags are all clear (so a flapping signal stays one episode)."""
    prev = np.asarray(previous, dtype=bool)[-(n - 1) :] if n > 1 else np.zeros(0, dtype=bool)
    joined = np.concatenate([prev, np.asarray(flags, dtype=bool)]).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(joined)])
    ends = np.arange(len(prev) + 1, len(joined) + 1)
    recent = csum[ends] - csum[np.maximum(ends - n, 0)]
    started: list[int] = []
    state = in_anomaly
    for i in range(len(alarms)):
        if not state and alarms[i]:
            state = True
            started.append(i)
        elif state and recent[i] == 0:
            state = False
    return Episodes(started, state)


def tail_flags(previous: BoolArray, flags: BoolArray, n: int) -> list[bool]:
    """The last ``n - 1`` flags to keep for the next batch's hysteresis."""
    if n <= 1:
        return []
    joined = np.concatenate([np.asarray(previous, dtype=bool), np.asarray(flags, dtype=bool)])
    return [bool(x) for x in joined[-(n - 1) :]]
