"""Rolling features for anomaly scoring. Pure numpy: no I/O.

For each point ``t`` (given the ``window`` points before it):

- ``value``: the observation itself (a per-stream model learns its normal range)
- ``delta``: ``value[t] - value[t-1]``
- ``robust_z``: ``(value[t] - median) / scale`` against the rolling median and
  MAD of the previous ``window`` points, ``scale = max(1.4826 * MAD,
  1e-3 * |median|, 1e-9)``, clipped to ±50
- ``seasonal_z``: ``(value[t] - profile[hour]) / profile.scale`` against the stream's
  hour-of-day median profile learned at training time (catches level shifts and
  drifts that the rolling window absorbs), clipped to ±50
- ``hour_sin``, ``hour_cos``: hour of day (UTC) on the unit circle (daily seasonality)

A point with fewer than ``MIN_HISTORY`` earlier points gets no features (NaN row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FEATURES = ("value", "delta", "robust_z", "seasonal_z", "hour_sin", "hour_cos")
MIN_HISTORY = 8
Z_CLIP = 50.0
MAD_TO_SIGMA = 1.4826

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True, slots=True)
class Profile:
    """Hour-of-day (UTC) medians of the training data and the robust scale of the
    residuals around them. Stored with the model version."""

    hour_medians: tuple[float, ...]
    scale: float

    def as_dict(self) -> dict[str, Any]:
        return {"hour_medians": list(self.hour_medians), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        medians = tuple(float(x) for x in data["hour_medians"])
        if len(medians) != 24:
            raise ValueError("a profile has 24 hourly medians")
        return cls(medians, float(data["scale"]))


def hours(epoch_seconds: FloatArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    return ((np.asarray(epoch_seconds) % 86400.0) // 3600.0).astype(np.int64)


def learn_profile(values: FloatArray, epoch_seconds: FloatArray) -> Profile:
    values = np.asarray(values, dtype=np.float64)
    hour = hours(epoch_seconds)
    overall = float(np.median(values))
    medians = np.array(
        [float(np.median(values[hour == h])) if (hour == h).any() else overall for h in range(24)]
    )
    residual = values - medians[hour]
    mad = float(np.median(np.abs(residual - np.median(residual))))
    scale = max(MAD_TO_SIGMA * mad, 1e-3 * abs(overall), 1e-9)
    return Profile(tuple(float(m) for m in medians), scale)


def _scale(median: FloatArray, mad: FloatArray) -> FloatArray:
    return np.maximum(np.maximum(MAD_TO_SIGMA * mad, 1e-3 * np.abs(median)), 1e-9)


def rolling_median_mad(
    values: FloatArray, window: int, start: int
) -> tuple[FloatArray, FloatArray]:
    """Median and MAD of ``values[i-window:i]`` for each ``i`` in ``[start, len)``.

    Windows shorter than ``window`` (a young stream) use what there is; fewer than
    MIN_HISTORY points give NaN.
    """
    n = len(values)
    med = np.full(n - start, np.nan)
    mad = np.full(n - start, np.nan)
    full_from = max(start, window)
    # Young points (partial window): at most `window` of them per stream lifetime.
    for i in range(start, min(full_from, n)):
        if i >= MIN_HISTORY:
            w = values[:i]
            centre = float(np.median(w))
            med[i - start] = centre
            mad[i - start] = float(np.median(np.abs(w - centre)))
    if full_from < n:
        # windows ending just before each i in [full_from, n)
        view = sliding_window_view(values[full_from - window : n - 1], window)
        m = np.median(view, axis=1)
        med[full_from - start :] = m
        mad[full_from - start :] = np.median(np.abs(view - m[:, None]), axis=1)
    return med, mad


def compute(
    values: FloatArray,
    epoch_seconds: FloatArray,
    window: int,
    profile: Profile,
    start: int = 0,
) -> FloatArray:
    """Feature rows for ``values[start:]``; ``values[:start]`` is history only."""
    values = np.asarray(values, dtype=np.float64)
    epoch_seconds = np.asarray(epoch_seconds, dtype=np.float64)
    med, mad = rolling_median_mad(values, window, start)
    current = values[start:]
    previous = np.concatenate(([np.nan], values[:-1]))[start:]
    robust_z = np.clip((current - med) / _scale(med, mad), -Z_CLIP, Z_CLIP)
    medians = np.asarray(profile.hour_medians, dtype=np.float64)
    seasonal_z = np.clip(
        (current - medians[hours(epoch_seconds[start:])]) / profile.scale, -Z_CLIP, Z_CLIP
    )
    hour = (epoch_seconds[start:] % 86400.0) / 3600.0
    angle = 2.0 * np.pi * hour / 24.0
    out = np.column_stack(
        [current, current - previous, robust_z, seasonal_z, np.sin(angle), np.cos(angle)]
    ).astype(np.float64)
    out[np.isnan(med)] = np.nan
    return out


def ready(rows: FloatArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows that have every feature (enough history)."""
    return np.asarray(~np.isnan(rows).any(axis=1))
