"""The anomaly detector and its decision rules. Pure: numpy and scikit-learn only.

- :class:`DetectorParams` are stored with every model version.
- :func:`fit` trains an IsolationForest on a stream's feature rows and sets the
  threshold at the ``1 - contamination`` quantile of the training scores.
- :func:`score` returns anomaly scores (higher is more anomalous: the negated
  ``score_samples``), :func:`flags` compares them with the threshold.
- :func:`hysteresis` turns point flags into alarms: an alarm at ``t`` needs at least
  ``k`` flagged points among the last ``n`` (``t`` included), so one odd point
  raises nothing and a sustained anomaly raises one episode.
- :func:`rolling_z_baseline` is the classic rolling mean/stddev z-score detector the
  evaluation compares against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from firewatch.detection import features
from firewatch.detection.features import FloatArray

if TYPE_CHECKING:  # scikit-learn takes seconds to import: only when a model is fitted
    from sklearn.ensemble import IsolationForest

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True, slots=True)
class DetectorParams:
    window: int = 60
    n_estimators: int = 100
    max_samples: int = 256
    contamination: float = 0.02
    k: int = 3
    n: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 10 <= self.window <= 2000:
            raise ValueError("window must be between 10 and 2000 points")
        if not 10 <= self.n_estimators <= 1000:
            raise ValueError("n_estimators must be between 10 and 1000")
        if not 16 <= self.max_samples <= 100_000:
            raise ValueError("max_samples must be between 16 and 100000")
        if not 0.0001 <= self.contamination <= 0.2:
            raise ValueError("contamination must be between 0.0001 and 0.2")
        if not 1 <= self.k <= self.n <= 100:
            raise ValueError("need 1 <= k <= n <= 100")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorParams:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Trained:
    model: IsolationForest
    threshold: float
    profile: features.Profile
    train_rows: int
    train_scores: FloatArray


def fit(values: FloatArray, epoch_seconds: FloatArray, params: DetectorParams) -> Trained:
    from sklearn.ensemble import IsolationForest

    profile = features.learn_profile(values, epoch_seconds)
    rows = features.compute(values, epoch_seconds, params.window, profile)
    rows = rows[features.ready(rows)]
    if len(rows) < 50:
        raise ValueError(
            f"need at least 50 points with {features.MIN_HISTORY} points of history to "
            f"train; the data window has {len(rows)}"
        )
    model = IsolationForest(
        n_estimators=params.n_estimators,
        max_samples=min(params.max_samples, len(rows)),
        random_state=params.seed,
        n_jobs=1,
    ).fit(rows)
    scores = score(model, rows)
    threshold = float(np.quantile(scores, 1.0 - params.contamination))
    return Trained(model, threshold, profile, len(rows), scores)


def score(model: IsolationForest, rows: FloatArray) -> FloatArray:
    """Anomaly scores for ready rows (higher = more anomalous); NaN rows stay NaN."""
    out = np.full(len(rows), np.nan)
    ok = features.ready(rows)
    if ok.any():
        out[ok] = -model.score_samples(rows[ok])
    return out


def flags(scores: FloatArray, threshold: float) -> BoolArray:
    return np.asarray(np.nan_to_num(scores, nan=-np.inf) > threshold)


def hysteresis(point_flags: BoolArray, previous: BoolArray, k: int, n: int) -> BoolArray:
    """Alarm where at least ``k`` of the last ``n`` flags (this one included) are set.

    ``previous`` is the tail of earlier flags (at most ``n - 1`` are used).
    """
    prev = np.asarray(previous, dtype=bool)[-(n - 1) :] if n > 1 else np.zeros(0, dtype=bool)
    joined = np.concatenate([prev, np.asarray(point_flags, dtype=bool)]).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(joined)])
    ends = np.arange(len(prev) + 1, len(joined) + 1)
    starts = np.maximum(ends - n, 0)
    return np.asarray((csum[ends] - csum[starts]) >= k)


def rolling_z_baseline(values: FloatArray, window: int, threshold: float = 3.0) -> BoolArray:
    """|value - rolling mean| > threshold * rolling std, both over the previous window."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(values), dtype=bool)
    if len(values) <= window:
        return out
    view = np.lib.stride_tricks.sliding_window_view(values[:-1], window)
    mean = view.mean(axis=1)
    std = view.std(axis=1)
    z = np.abs(values[window:] - mean) / np.maximum(std, 1e-9)
    out[window:] = z > threshold
    return out
