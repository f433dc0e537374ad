"""Features, hysteresis, episodes and batch rules: pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from firewatch.detection import anomaly, features, synthetic
from firewatch.detection.anomaly import DetectorParams
from firewatch.detection.model import (
    Point,
    by_stream,
    category_of,
    duplicate_positions,
    episodes,
    group_key,
    tail_flags,
)
from firewatch.detection.service import check_batch
from firewatch.errors import UnprocessableError
from firewatch.settings import Settings

FLAT = features.Profile(tuple([10.0] * 24), 1.0)


def test_robust_z_against_the_previous_window() -> None:
    values = np.array([10.0, 11.0, 9.0, 10.0, 12.0, 8.0, 10.0, 11.0, 9.0, 10.0, 30.0])
    epochs = np.arange(len(values), dtype=float) * 3600
    rows = features.compute(values, epochs, window=10, profile=FLAT, start=10)
    # previous 10 points: median 10, MAD 1 -> scale 1.4826
    assert rows[0, 0] == 30.0
    assert rows[0, 1] == 20.0
    assert rows[0, 2] == pytest.approx(20 / 1.4826)
    assert rows[0, 3] == pytest.approx(20.0)  # (30 - 10) / 1.0
    hour = 10  # epoch 36000 s is 10:00 UTC
    assert rows[0, 4] == pytest.approx(np.sin(2 * np.pi * hour / 24))


def test_young_streams_get_no_features_and_incremental_equals_batch() -> None:
    s = synthetic.stream(2, train_points=300, test_points=10, anomalies_per_kind=0)
    profile = features.learn_profile(s.train_values, s.train_epochs)
    whole = features.compute(s.train_values, s.train_epochs, 60, profile)
    assert not features.ready(whole[: features.MIN_HISTORY]).any()
    assert features.ready(whole[features.MIN_HISTORY :]).all()
    # Scoring a batch with just the history it needs gives the same rows.
    part = features.compute(s.train_values[200:], s.train_epochs[200:], 60, profile, start=60)
    np.testing.assert_allclose(part, whole[260:])


def test_hysteresis_needs_k_of_n() -> None:
    flags = np.array([1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    alarms = anomaly.hysteresis(flags, np.zeros(0, dtype=bool), k=3, n=5)
    assert alarms.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    # the previous batch's tail counts
    tail = np.array([1, 1], dtype=bool)
    assert anomaly.hysteresis(np.array([1], dtype=bool), tail, 3, 5).tolist() == [True]
    assert tail_flags(tail, np.array([0, 1], dtype=bool), 5) == [True, True, False, True]


def test_episodes_start_once_and_end_after_n_clear_points() -> None:
    flags = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1], dtype=bool)
    alarms = anomaly.hysteresis(flags, np.zeros(0, dtype=bool), 3, 5)
    ep = episodes(alarms, flags, np.zeros(0, dtype=bool), 5, False)
    assert ep.started_at == [2, 12]
    assert ep.in_anomaly is True
    # already in an episode: continuing alarms start nothing new
    assert episodes(alarms[:5], flags[:5], np.zeros(0, dtype=bool), 5, True).started_at == []


def test_detector_flags_an_injected_spike_but_not_seasonality() -> None:
    s = synthetic.stream(4, train_points=2000, test_points=600, anomalies_per_kind=0)
    params = DetectorParams()
    trained = anomaly.fit(s.train_values, s.train_epochs, params)
    values = np.concatenate([s.train_values, s.test_values])
    values[2300:2305] += 10 * float(np.std(s.train_values))
    epochs = np.concatenate([s.train_epochs, s.test_epochs])
    rows = features.compute(values, epochs, params.window, trained.profile, start=2000)
    flags = anomaly.flags(anomaly.score(trained.model, rows), trained.threshold)
    alarms = anomaly.hysteresis(flags, np.zeros(0, dtype=bool), params.k, params.n)
    assert alarms[300:306].any()
    assert alarms[:290].sum() <= 5  # seasonality with noise is (nearly) never an alarm


def test_fit_refuses_too_little_data() -> None:
    with pytest.raises(ValueError, match="at least 50"):
        anomaly.fit(np.ones(30), np.arange(30.0), DetectorParams())
    with pytest.raises(ValueError, match="k <= n"):
        DetectorParams(k=6, n=5)


def test_batch_rules() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    pts = [Point("b", t, 1.0), Point("a", t + timedelta(seconds=5), 2.0), Point("a", t, 3.0)]
    assert {k: [p.value for p in v] for k, v in by_stream(pts).items()} == {
        "b": [1.0],
        "a": [3.0, 2.0],
    }
    assert duplicate_positions([*pts, Point("a", t, 9.0)]) == [3]
    settings = Settings(
        database_url=SecretStr("postgresql://x"),
        redis_url=SecretStr("redis://x"),
        signals_max_batch=3,
    )
    check_batch(pts, settings, t)
    with pytest.raises(UnprocessableError, match="at most 3"):
        check_batch([*pts, Point("c", t, 1.0)], settings, t)
    with pytest.raises(UnprocessableError, match="future"):
        check_batch([Point("a", t + timedelta(hours=1), 1.0)], settings, t)
    assert category_of({"category": "latency"}) == "latency"
    assert category_of({"category": "bogus"}) == "other"
    assert group_key("ranker.auc") == "ranker.auc"
