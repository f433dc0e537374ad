"""The binary COPY read of incidents gives the same frame as reading row by row."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from firewatch.analytics import store
from firewatch.analytics.windows import Scope
from firewatch.runtime.database import PgPool
from tests.analytics.fixture import insert


async def test_frame_matches_the_rows_as_stored(pool: PgPool) -> None:
    start, end = datetime(1993, 1, 1, tzinfo=UTC), datetime(1993, 1, 15, tzinfo=UTC)
    async with pool.acquire() as conn:
        await insert(conn, 1993)
        ids = await conn.fetch(
            "SELECT id FROM incidents WHERE opened_at >= $1 AND opened_at < $2 ORDER BY id",
            start,
            end,
        )
        # group keys: two incidents share one, one has another, the rest none
        first, second, third = (r["id"] for r in ids[:3])
        await conn.execute(
            "UPDATE incidents SET group_key = CASE WHEN id = $3 THEN 'gk-b' ELSE 'gk-a' END"
            " WHERE id = ANY($1::bigint[]) OR id = $2 OR id = $3",
            [first],
            second,
            third,
        )
        expected = await conn.fetch(
            "SELECT * FROM incidents WHERE opened_at >= $1 AND opened_at < $2 ORDER BY id",
            start,
            end,
        )
        frame = await store.incidents_frame(conn, start, end)
        scoped = await store.incidents_frame(conn, start, end, Scope(service="svc-a"))
    frame = frame.sort_values("id").reset_index(drop=True)
    assert list(frame["id"]) == [r["id"] for r in expected]
    assert len(expected) == 6
    for row, (_, got) in zip(expected, frame.iterrows(), strict=True):
        assert got["severity"] == row["severity"]
        assert got["reopen_count"] == row["reopen_count"]
        for column in ("category", "service", "team"):
            value = got[column]
            assert (None if isinstance(value, float) and math.isnan(value) else value) == row[
                column
            ]
        for column in ("opened_at", "acknowledged_at", "mitigated_at", "resolved_at"):
            at = row[column]
            if at is None:
                assert math.isnan(got[column])
            else:
                assert got[column] == at.timestamp()
    keys = list(frame["group_key"])
    assert keys[0] == keys[1]
    assert keys[2] != keys[0]
    assert all(k is not None for k in keys[:3])
    assert frame["group_key"].isna().tolist() == [False, False, False, True, True, True]
    assert set(scoped["service"]) == {"svc-a"}
    assert len(scoped) == sum(r["service"] == "svc-a" for r in expected)


async def test_a_table_read_in_two_halves_gives_the_same_frame(
    pool: PgPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, end = datetime(1994, 1, 1, tzinfo=UTC), datetime(1994, 1, 15, tzinfo=UTC)
    async with pool.acquire() as conn:
        await insert(conn, 1994)
        await conn.execute(
            "UPDATE incidents SET group_key = 'gk-half' WHERE id = "
            "(SELECT min(id) FROM incidents WHERE opened_at >= $1 AND opened_at < $2)",
            start,
            end,
        )
        whole = await store.incidents_frame(conn, start, end)
        monkeypatch.setattr(store, "SPLIT_PAGES", 0)  # split even this small table
        async with pool.acquire() as helper:
            halves = await store.incidents_frame(conn, start, end, helper=helper)
            assert not helper.is_in_transaction()
    assert len(whole) == 6

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("id").reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(whole), ordered(halves))
