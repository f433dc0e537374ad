"""The analytics definitions against a hand-computed fixture (no servers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from firewatch.analytics import metrics
from firewatch.analytics.metrics import Options, SloTarget, Window
from tests.analytics.fixture import at, frame

WINDOW = Window(at(2001, 1, 1), at(2001, 1, 15))
AS_OF = at(2001, 2, 1)


def run(df: pd.DataFrame | None = None, **opts: Any) -> dict[str, Any]:
    return metrics.summary(frame() if df is None else df, WINDOW, Options(as_of=AS_OF, **opts))


def test_totals_count_unacknowledged_and_reopened_incidents() -> None:
    # In the window: #1..#6. #7 is history, #8 sits exactly on the (exclusive) end.
    assert run()["totals"] == {
        "incidents": 6,
        "acknowledged": 4,  # #1 #2 #4 #6 (the reopen kept its first ack)
        "unacknowledged": 2,  # #3 resolved straight from open, #5 still open
        "mitigated": 3,
        "resolved": 3,  # #6 was resolved, then reopened: not resolved now
        "unresolved": 3,
        "reopened": 1,
    }


def test_mtta_ttm_mttr_percentiles() -> None:
    out = run()
    # MTTA over [30, 60, 120, 600]: p50 = (60+120)/2, p90 = 120 + 0.7*480, mean 810/4.
    assert out["mtta"] == {
        "count": 4,
        "p50_seconds": 90.0,
        "p90_seconds": 456.0,
        "mean_seconds": 202.5,
    }
    # Mitigation over [600, 1800, 3600]: p90 = 1800 + 0.8*1800.
    assert out["time_to_mitigate"] == {
        "count": 3,
        "p50_seconds": 1800.0,
        "p90_seconds": 3240.0,
        "mean_seconds": 2000.0,
    }
    # Resolution over [1200, 1800, 3600] (#6 is reopened, so not counted).
    assert out["mttr"] == {
        "count": 3,
        "p50_seconds": 1800.0,
        "p90_seconds": 3240.0,
        "mean_seconds": 2200.0,
    }


def test_breakdown_by_severity_and_service() -> None:
    out = run()
    sev = {r["key"]: r for r in out["by"]["severity"]}
    assert list(sev) == ["SEV1", "SEV2", "SEV3"]
    assert sev["SEV1"]["incidents"] == 3
    assert sev["SEV1"]["unacknowledged"] == 0
    assert sev["SEV1"]["unresolved"] == 1
    assert sev["SEV1"]["mtta"] == {
        "count": 3,
        "p50_seconds": 120.0,
        "p90_seconds": 504.0,  # [30, 120, 600]: 120 + 0.8*480
        "mean_seconds": 250.0,
    }
    assert sev["SEV1"]["mttr"]["p50_seconds"] == 2400.0
    assert sev["SEV2"]["unacknowledged"] == 1
    assert sev["SEV3"]["mtta"] == {
        "count": 0,
        "p50_seconds": None,
        "p90_seconds": None,
        "mean_seconds": None,
    }
    svc = {r["key"]: r["incidents"] for r in out["by"]["service"]}
    assert svc == {"(none)": 1, "svc-a": 2, "svc-b": 2, "svc-c": 1}
    team = {r["key"]: r["incidents"] for r in out["by"]["team"]}
    assert team == {"(none)": 1, "core": 5}
    cat = {r["key"]: r["incidents"] for r in out["by"]["category"]}
    assert cat == {"data_quality": 2, "latency": 3, "other": 1}


def test_repeats_see_history_before_the_window() -> None:
    # #1 repeats #7 (1 s earlier, before the window); #2 repeats #1; #4 repeats #3
    # six days later. #5 has no service, #6 is the only svc-c incident.
    assert run()["repeats"] == {"within_days": 7.0, "repeat_incidents": 3, "rate": 0.5}
    # With a 5-day horizon #4 (6 days after #3) is no longer a repeat.
    assert run(repeat_days=5.0)["repeats"]["repeat_incidents"] == 2


def test_repeats_by_group_key() -> None:
    df = frame()
    df["group_key"] = ["g1", "g2", "g3", "g4", "g5", "g5", None, None]
    df["service"] = None  # only the group key can match now
    # #6 (Jan 10 12:00) repeats #5 (Jan 10 00:00) by group key.
    assert run(df)["repeats"]["repeat_incidents"] == 1


def test_slo_breaches_against_targets() -> None:
    slo = {r["severity"]: r for r in run()["slo"]}
    # SEV1: #2 acked after 600 s > 300; #2 resolved after 3600 s > 1800 and #6 is
    # unresolved at as_of (clock keeps running).
    assert slo["SEV1"] == {
        "severity": "SEV1",
        "incidents": 3,
        "ack_target_seconds": 300,
        "resolve_target_seconds": 1800,
        "ack_breaches": 1,
        "ack_breach_rate": 0.3333,
        "resolve_breaches": 2,
        "resolve_breach_rate": 0.6667,
    }
    # SEV2: #3 never acked; its ack clock stopped at resolution (1800 s > 900).
    # #4 is unresolved at as_of: a resolve breach.
    assert slo["SEV2"]["ack_breaches"] == 1
    assert slo["SEV2"]["resolve_breaches"] == 1


def test_slo_targets_are_configurable() -> None:
    targets = {1: SloTarget(ack_seconds=700, resolve_seconds=None), 3: SloTarget(60, 60)}
    slo = {r["severity"]: r for r in run(slo_targets=targets)["slo"]}
    assert set(slo) == {"SEV1", "SEV3"}
    assert slo["SEV1"]["ack_breaches"] == 0
    assert slo["SEV1"]["resolve_breaches"] is None
    assert slo["SEV3"]["ack_breaches"] == 1  # #5 never acked, open since Jan 10


def test_weekly_trend_has_monday_utc_weeks() -> None:
    weeks = run()["weekly"]
    assert [w["week_start"] for w in weeks] == [at(2001, 1, 1), at(2001, 1, 8)]
    assert weeks[0]["incidents"] == 3
    assert weeks[0]["unacknowledged"] == 1
    assert weeks[0]["mtta_p50_seconds"] == 360.0  # [120, 600]
    assert weeks[0]["mttr_p50_seconds"] == 1800.0  # [1200, 1800, 3600]
    assert weeks[1]["incidents"] == 3
    assert weeks[1]["mtta_p50_seconds"] == 45.0  # [30, 60]
    assert weeks[1]["mttr_p50_seconds"] is None


def test_window_boundaries_are_half_open() -> None:
    df = frame()
    # Move #1 to the last microsecond before the end and #2 onto the start.
    df.loc[0, "opened_at"] = at(2001, 1, 15).timestamp() - 1e-6
    df.loc[1, "opened_at"] = at(2001, 1, 1).timestamp()
    assert run(df)["totals"]["incidents"] == 6


def test_empty_window() -> None:
    out = metrics.summary(frame(), Window(at(1999, 3, 1), at(1999, 3, 10)), Options(as_of=AS_OF))
    assert out["totals"]["incidents"] == 0
    assert out["mtta"] == {
        "count": 0,
        "p50_seconds": None,
        "p90_seconds": None,
        "mean_seconds": None,
    }
    assert out["by"]["severity"] == []
    assert out["repeats"]["rate"] is None
    assert [w["incidents"] for w in out["weekly"]] == [0, 0]
    assert all(r["incidents"] == 0 and r["ack_breach_rate"] is None for r in out["slo"])
    assert (
        metrics.summary(metrics.empty_frame(), WINDOW, Options(as_of=AS_OF))["totals"]["incidents"]
        == 0
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 7 * 86400), ("30d", 30 * 86400), ("12h", 43200), ("90m", 5400)]
)
def test_parse_window(text: str, seconds: int) -> None:
    w = metrics.parse_window(text, AS_OF)
    assert w.end == AS_OF
    assert w.end - w.start == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "0d", "7w", "1.5d", "99999d"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        metrics.parse_window(text, AS_OF)


@pytest.mark.parametrize("seed", range(6))
def test_breakdown_quantiles_and_means_equal_pandas_groupby(seed: int) -> None:
    """The breakdowns sort each duration once and share it; the figures must be the
    ones pandas' groupby quantile/mean give on random data with ties and gaps."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 3000
    opened = at(2001, 1, 1).timestamp() + rng.uniform(0, 13 * 86400, n)
    ack = np.round(rng.exponential(400, n), seed % 3)
    ack[rng.random(n) < 0.3] = np.nan
    df = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "severity": rng.integers(1, 5, n),
            "category": rng.choice(["latency", "data_drift", "other"], n),
            "service": pd.Series(rng.choice(np.array(["b", "a", "c", None], dtype=object), n)),
            "team": rng.choice([f"t{i}" for i in range(30)], n),
            "group_key": None,
            "opened_at": opened,
            "acknowledged_at": opened + ack,
            "mitigated_at": np.nan,
            "resolved_at": opened + np.round(rng.exponential(3600, n)),
            "reopen_count": 0,
        }
    )
    out = run(df)
    durations = metrics.durations(df)
    for dimension in ("severity", "service", "team"):
        keys = df[dimension].fillna(metrics.NONE_KEY)
        grouped = durations.groupby(keys.to_numpy(), sort=True)
        p50, p90, mean = grouped.quantile(0.5), grouped.quantile(0.9), grouped.mean()
        rows = out["by"][dimension]
        assert len(rows) == len(mean)
        for row, key in zip(rows, mean.index, strict=True):
            assert row["key"] == (f"SEV{key}" if dimension == "severity" else key)
            for metric, name in (("mtta", "mtta"), ("mttr", "mttr")):
                for stat, table in (("p50", p50), ("p90", p90), ("mean", mean)):
                    expected: Any = table.at[key, metric]
                    assert row[name][f"{stat}_seconds"] == round(float(expected), 3)
            assert row["time_to_mitigate"]["count"] == 0
    weeks = {w["week_start"].timestamp(): w for w in out["weekly"]}
    week = np.floor((opened - 4 * 86400) / (7 * 86400)) * 7 * 86400 + 4 * 86400
    by_week = durations.groupby(week, sort=True)
    medians: dict[Any, Any] = by_week["mtta"].quantile(0.5).to_dict()
    for start, median in medians.items():
        assert weeks[float(start)]["mtta_p50_seconds"] == round(float(median), 3)
