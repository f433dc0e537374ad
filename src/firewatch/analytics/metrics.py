"""MTTA, time to mitigate, MTTR, trends, repeats and SLO breaches, computed with pandas.

Pure: the input is a DataFrame of incidents (one row each, timestamps as UTC epoch
seconds), the output plain dicts. The definitions here are the ones in
docs/metrics.md, word for word in meaning; change both together.

Input columns (see :data:`COLUMNS`): ``id``, ``severity`` (1..4), ``category``,
``service``, ``team`` (may be missing), ``group_key`` (may be missing),
``opened_at``, ``acknowledged_at``, ``mitigated_at``, ``resolved_at`` (epoch
seconds, NaN when not set) and ``reopen_count``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from firewatch.analytics.windows import DIMENSIONS, Window, parse_window

__all__ = ["DIMENSIONS", "Window", "parse_window"]

COLUMNS = (
    "id",
    "severity",
    "category",
    "service",
    "team",
    "group_key",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "reopen_count",
)
NONE_KEY = "(none)"
WEEK = 7 * 86400
# 1970-01-05 was a Monday: weeks start on Monday 00:00 UTC (ISO weeks).
_MONDAY_EPOCH = 4 * 86400


@dataclass(frozen=True, slots=True)
class SloTarget:
    ack_seconds: float | None
    resolve_seconds: float | None


DEFAULT_SLO_TARGETS: dict[int, SloTarget] = {
    1: SloTarget(ack_seconds=5 * 60, resolve_seconds=30 * 60),
    2: SloTarget(ack_seconds=15 * 60, resolve_seconds=2 * 3600),
}


@dataclass(frozen=True, slots=True)
class Options:
    as_of: datetime
    repeat_days: float = 7.0
    slo_targets: dict[int, SloTarget] = field(default_factory=lambda: dict(DEFAULT_SLO_TARGETS))


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _stats(values: pd.Series[float]) -> dict[str, Any]:
    """count, p50, p90 (linear interpolation) and mean of the non-missing durations."""
    present = values.dropna()
    if present.empty:
        return {"count": 0, "p50_seconds": None, "p90_seconds": None, "mean_seconds": None}
    arr = present.to_numpy(dtype="float64")
    p50, p90 = np.quantile(arr, [0.5, 0.9])
    return {
        "count": len(arr),
        "p50_seconds": round(float(p50), 3),
        "p90_seconds": round(float(p90), 3),
        "mean_seconds": round(float(arr.mean()), 3),
    }


def durations(df: pd.DataFrame) -> pd.DataFrame:
    """The three durations per incident, NaN where the incident has not got there."""
    return pd.DataFrame(
        {
            "mtta": df["acknowledged_at"] - df["opened_at"],
            "ttm": df["mitigated_at"] - df["opened_at"],
            "mttr": df["resolved_at"] - df["opened_at"],
        },
        index=df.index,
    )


_METRICS = ("mtta", "ttm", "mttr")


@dataclass(frozen=True, slots=True)
class _ByValue:
    """One duration's non-missing values in ascending order and the rows they are in:
    sorted once, then shared by every breakdown and the weekly trend."""

    values: Any
    rows: Any


def _by_value(column: pd.Series[float]) -> _ByValue:
    values = column.to_numpy(dtype="float64")
    order = np.argsort(values, kind="stable")  # NaN sort last
    rows = order[: int(np.count_nonzero(~np.isnan(values)))]
    return _ByValue(values[rows], rows)


def _sorted_values(by: dict[str, _ByValue], dur: pd.DataFrame) -> dict[str, _ByValue]:
    return by or {m: _by_value(dur[m]) for m in _METRICS}


def _group_quantiles(by: _ByValue, codes: Any, groups: int, qs: tuple[float, ...]) -> Any:
    """groups x len(qs) quantiles of the values in each group, NaN for an empty group.

    Linear interpolation exactly as pandas' groupby ``quantile`` computes it (position
    ``q * (n - 1)`` truncated, then ``v[i] + (v[i + 1] - v[i]) * frac``); a stable sort
    of the group codes over the value order gives each group's values in order, with
    no comparison sort per breakdown."""
    out = np.full((groups, len(qs)), np.nan)
    if not len(by.rows):
        return out
    code = codes[by.rows]
    narrow = code.astype(np.int16) if groups < 2**15 else code
    values = by.values[np.argsort(narrow, kind="stable")]
    counts = np.bincount(code, minlength=groups)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    for j, q in enumerate(qs):
        position = q * (counts[has] - 1).astype(np.float64)
        index = starts[has] + position.astype(np.int64)
        frac = position % 1
        low = values[index]
        high = values[np.minimum(index + 1, len(values) - 1)]
        out[has, j] = np.where(frac == 0.0, low, low + (high - low) * frac)
    return out


def _codes(keys: pd.Series[Any]) -> tuple[Any, list[Any]]:
    """Group codes 0..k-1 in sorted key order, and the keys."""
    if isinstance(keys.dtype, pd.CategoricalDtype):
        return keys.cat.codes.to_numpy(dtype=np.int64), list(keys.cat.categories)
    codes, uniques = pd.factorize(keys, sort=True)
    return codes.astype(np.int64), list(uniques)


def _group_stats(
    df: pd.DataFrame,
    dur: pd.DataFrame,
    keys: pd.Series[Any],
    by: dict[str, _ByValue] | None = None,
) -> list[dict[str, Any]]:
    if df.empty:
        return []
    by = _sorted_values(by or {}, dur)
    codes, labels = _codes(keys)
    groups = len(labels)
    counts = np.bincount(codes, minlength=groups)
    unack = np.bincount(codes, weights=df["acknowledged_at"].isna().to_numpy(), minlength=groups)
    unres = np.bincount(codes, weights=df["resolved_at"].isna().to_numpy(), minlength=groups)
    n = {m: np.bincount(codes[by[m].rows], minlength=groups) for m in _METRICS}
    quantiles = {m: _group_quantiles(by[m], codes, groups, (0.5, 0.9)) for m in _METRICS}
    mean = dur.groupby(codes, sort=True).mean()  # pandas' compensated sums
    out: list[dict[str, Any]] = []
    for g, key in enumerate(labels):
        if not counts[g]:  # a category no incident has
            continue
        row: dict[str, Any] = {
            "key": f"SEV{int(key)}" if isinstance(key, int | np.integer) else str(key),
            "incidents": int(counts[g]),
            "unacknowledged": _int(unack[g]),
            "unresolved": _int(unres[g]),
        }
        for metric, name in (("mtta", "mtta"), ("ttm", "time_to_mitigate"), ("mttr", "mttr")):
            c = _int(n[metric][g])
            row[name] = {
                "count": c,
                "p50_seconds": _num(quantiles[metric][g, 0]) if c else None,
                "p90_seconds": _num(quantiles[metric][g, 1]) if c else None,
                "mean_seconds": _num(mean.at[g, metric]) if c else None,
            }
        out.append(row)
    return out


def _int(value: Any) -> int:
    return int(value)


def _num(value: Any) -> float | None:
    f = float(value)
    return None if math.isnan(f) else round(f, 3)


def _dimension_keys(df: pd.DataFrame, dimension: str) -> pd.Series[Any]:
    """Group keys: severity as its number (rendered SEVn), others as categories with
    missing values shown as ``(none)``."""
    if dimension == "severity":
        return df["severity"].astype("int64")
    if dimension not in df.columns:
        return pd.Series(NONE_KEY, index=df.index, dtype="category")
    col = df[dimension].astype("category")
    if col.isna().any():
        if NONE_KEY not in col.cat.categories:
            col = col.cat.add_categories([NONE_KEY])
        col = col.fillna(NONE_KEY)
    # keys sort as text, whatever order the categories arrived in
    return col.cat.reorder_categories(sorted(col.cat.categories))


def repeats(df: pd.DataFrame, repeat_days: float) -> pd.Series[bool]:
    """True where an earlier incident with the same group key, or with the same service
    and category, was opened at most ``repeat_days`` before this one."""
    horizon = repeat_days * 86400
    hit = np.zeros(len(df), dtype=bool)
    opened = df["opened_at"].to_numpy(dtype="float64")
    ids = df["id"].to_numpy()
    for keys in (["group_key"], ["service", "category"]):
        if df.empty or any(k not in df.columns for k in keys):
            continue
        present = df[keys].notna().all(axis=1).to_numpy()
        codes = np.zeros(len(df), dtype="int64")
        for k in keys:  # combine per-column codes into one key code
            c, uniques = pd.factorize(df[k])
            codes = codes * (len(uniques) + 1) + c
        order = np.lexsort((ids, opened, codes))
        same = codes[order][1:] == codes[order][:-1]
        close = (opened[order][1:] - opened[order][:-1]) <= horizon
        both = present[order][1:] & present[order][:-1]
        hit[order[1:]] |= same & close & both
    return pd.Series(hit, index=df.index, dtype=bool)


def weekly(
    df: pd.DataFrame, dur: pd.DataFrame, window: Window, by: dict[str, _ByValue] | None = None
) -> list[dict[str, Any]]:
    """One row per Monday-based UTC week touching the window, empty weeks included."""
    first = _week_start(_epoch(window.start))
    last = _week_start(_epoch(window.end) - 1e-6)
    starts = np.arange(first, last + 1, WEEK, dtype="float64")
    weeks = len(starts)
    if df.empty:
        codes = np.zeros(0, dtype=np.int64)
    else:
        week = _week_start_array(df["opened_at"].to_numpy(dtype="float64"))
        codes = np.rint((week - first) / WEEK).astype(np.int64)
    by = _sorted_values(by or {}, dur)
    counts = np.bincount(codes, minlength=weeks)
    unack = np.bincount(
        codes, weights=df["acknowledged_at"].isna().to_numpy(dtype=bool), minlength=weeks
    )
    p50 = {m: _group_quantiles(by[m], codes, weeks, (0.5,))[:, 0] for m in ("mtta", "mttr")}
    mean = dur[["mtta", "mttr"]].groupby(codes, sort=True).mean()
    rows: list[dict[str, Any]] = []
    for w, start in enumerate(starts):
        present = bool(counts[w])
        rows.append(
            {
                "week_start": datetime.fromtimestamp(float(start), UTC),
                "incidents": int(counts[w]),
                "unacknowledged": int(unack[w]),
                "mtta_p50_seconds": _num(p50["mtta"][w]),
                "mtta_mean_seconds": _num(mean.at[w, "mtta"]) if present else None,
                "mttr_p50_seconds": _num(p50["mttr"][w]),
                "mttr_mean_seconds": _num(mean.at[w, "mttr"]) if present else None,
            }
        )
    return rows


def _week_start(epoch: float) -> float:
    return math.floor((epoch - _MONDAY_EPOCH) / WEEK) * WEEK + _MONDAY_EPOCH


def _week_start_array(epochs: np.ndarray[Any, np.dtype[np.float64]]) -> Any:
    return np.floor((epochs - _MONDAY_EPOCH) / WEEK) * WEEK + _MONDAY_EPOCH


def slo(df: pd.DataFrame, options: Options) -> list[dict[str, Any]]:
    """Breaches of the per-severity targets.

    Ack clock: opened -> acknowledged; for an incident never acknowledged it runs until
    it was resolved, or until ``as_of`` while unresolved. Resolve clock: opened ->
    resolved, or until ``as_of`` while unresolved. A clock beyond its target is a breach.
    """
    as_of = _epoch(options.as_of)
    rows: list[dict[str, Any]] = []
    for severity in sorted(options.slo_targets):
        target = options.slo_targets[severity]
        sub = df[df["severity"] == severity]
        ack_end = sub["acknowledged_at"].fillna(sub["resolved_at"]).fillna(as_of)
        res_end = sub["resolved_at"].fillna(as_of)
        ack_clock = ack_end - sub["opened_at"]
        res_clock = res_end - sub["opened_at"]
        n = len(sub)
        row: dict[str, Any] = {
            "severity": f"SEV{severity}",
            "incidents": n,
            "ack_target_seconds": target.ack_seconds,
            "resolve_target_seconds": target.resolve_seconds,
            "ack_breaches": None,
            "ack_breach_rate": None,
            "resolve_breaches": None,
            "resolve_breach_rate": None,
        }
        if target.ack_seconds is not None:
            b = int((ack_clock > target.ack_seconds).sum())
            row["ack_breaches"] = b
            row["ack_breach_rate"] = round(b / n, 4) if n else None
        if target.resolve_seconds is not None:
            b = int((res_clock > target.resolve_seconds).sum())
            row["resolve_breaches"] = b
            row["resolve_breach_rate"] = round(b / n, 4) if n else None
        rows.append(row)
    return rows


def _window_mask(df: pd.DataFrame, window: Window) -> pd.Series[bool]:
    start, end = _epoch(window.start), _epoch(window.end)
    return (df["opened_at"] >= start) & (df["opened_at"] < end)


def summary(df: pd.DataFrame, window: Window, options: Options) -> dict[str, Any]:
    """Everything for one window.

    ``df`` may also hold incidents opened up to ``repeat_days`` before the window (see
    :func:`history_start`): they are not counted, but let the first days of the window
    see their repeats.
    """
    df = df.reset_index(drop=True)
    rep_all = repeats(df, options.repeat_days)
    mask = _window_mask(df, window)
    df = df[mask]
    rep = rep_all[mask]
    dur = durations(df)
    by = {m: _by_value(dur[m]) for m in _METRICS}  # each duration sorted once
    n = len(df)
    repeat_count = int(rep.sum())
    return {
        "window": {"from": window.start, "to": window.end, "as_of": options.as_of},
        "totals": {
            "incidents": n,
            "acknowledged": int(df["acknowledged_at"].notna().sum()),
            "unacknowledged": int(df["acknowledged_at"].isna().sum()),
            "mitigated": int(df["mitigated_at"].notna().sum()),
            "resolved": int(df["resolved_at"].notna().sum()),
            "unresolved": int(df["resolved_at"].isna().sum()),
            "reopened": int((df["reopen_count"] > 0).sum()),
        },
        "mtta": _stats(dur["mtta"]),
        "time_to_mitigate": _stats(dur["ttm"]),
        "mttr": _stats(dur["mttr"]),
        "by": {d: _group_stats(df, dur, _dimension_keys(df, d), by) for d in DIMENSIONS},
        "weekly": weekly(df, dur, window, by),
        "repeats": {
            "within_days": options.repeat_days,
            "repeat_incidents": repeat_count,
            "rate": round(repeat_count / n, 4) if n else None,
        },
        "slo": slo(df, options),
    }


def history_start(window: Window, options: Options) -> datetime:
    """Where to start reading incidents so that repeats at the window start are seen."""
    return window.start - timedelta(days=options.repeat_days)
