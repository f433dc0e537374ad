"""The one query analytics needs: incidents of a time range, straight into pandas.

Rows travel through ``COPY ... TO STDOUT (FORMAT binary)`` as one fixed-width bytea
each, so the whole result is one numpy structured array (no per-row Python, no text
parsing, no float formatting in PostgreSQL):

- timestamps go as they are stored (microseconds since 2000-01-01 UTC; a missing
  one as ``-infinity``) and become UTC epoch seconds, NaN when missing;
- text columns (category, service, team, group key) go as their 64-bit
  ``hashtextextended`` (0 when missing). Their names are read afterwards by primary
  key for one representative incident per distinct hash, a few dozen rows. Two
  different texts sharing a 64-bit hash would merge; at a million distinct values
  the chance is about 3e-8. Both reads share one repeatable-read snapshot.

A large table is read in two halves at once (by ``ctid`` range) when the caller
lends a second connection.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from firewatch.analytics.metrics import COLUMNS
from firewatch.analytics.windows import Scope
from firewatch.runtime.database import Conn

_TEXT_COLUMNS = ("category", "service", "team", "group_key")
_TIME_COLUMNS = ("opened_at", "acknowledged_at", "mitigated_at", "resolved_at")

# One bytea of fixed width per row (a single COPY field: 4 bytes of framing per row
# instead of 4 per column), laid out as _FIELDS.
_SELECT = """
SELECT int8send(id) || int4send(severity::int4)
       || int8send(coalesce(hashtextextended(category, 0), 0))
       || int8send(coalesce(hashtextextended(service, 0), 0))
       || int8send(coalesce(hashtextextended(team, 0), 0))
       || int8send(coalesce(hashtextextended({group_key}, 0), 0))
       || timestamptz_send(coalesce(opened_at, '-infinity'))
       || timestamptz_send(coalesce(acknowledged_at, '-infinity'))
       || timestamptz_send(coalesce(mitigated_at, '-infinity'))
       || timestamptz_send(coalesce(resolved_at, '-infinity'))
       || int4send(reopen_count::int4)
  FROM incidents
 WHERE opened_at >= $1 AND opened_at < $2
"""

_FIELDS: list[tuple[str, str]] = [
    ("id", ">i8"),
    ("severity", ">i4"),
    *((name, ">i8") for name in _TEXT_COLUMNS),
    *((name, ">i8") for name in _TIME_COLUMNS),
    ("reopen_count", ">i4"),
]
# One tuple of binary COPY: field count (1), the bytea's length, the bytea.
_ROW = np.dtype([("fields", ">i2"), ("length", ">i4"), *_FIELDS])
_HEADER = 19  # signature (11) + flags (4) + header extension length (4, always 0 here)
_TRAILER = 2  # field count -1
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds
_NO_TIME = np.iinfo(np.int64).min  # -infinity


async def _has_group_key(conn: Conn) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM information_schema.columns "
        "WHERE table_name = 'incidents' AND column_name = 'group_key' "
        "AND table_schema = current_schema()"
    )
    return found is not None


def _epoch_seconds(us: Any) -> Any:
    """PostgreSQL timestamps (int64 us since 2000) -> Unix seconds, NaN for -infinity.
    The integer sum is exact, so the division rounds once, like numeric -> float8."""
    out = (us + _PG_EPOCH_US).astype(np.float64) / 1e6
    out[us == _NO_TIME] = np.nan
    return out


async def _names(conn: Conn, rows: Any, has_group_key: bool) -> dict[str, Any]:
    """Categorical columns from the hashes: each distinct hash is named by reading one
    incident that has it (by primary key)."""
    groups = {}
    wanted: set[int] = set()
    positions = np.arange(len(rows))
    for column in ("category", "service", "team"):
        codes, uniques = pd.factorize(rows[column].astype(np.int64))
        first = np.empty(len(uniques), dtype=np.int64)
        first[codes[::-1]] = positions[::-1]  # the first row of each code wins
        groups[column] = (first, codes)
        wanted.update(int(rows["id"][i]) for i in first)
    found = await conn.fetch(
        "SELECT id, category, service, team FROM incidents WHERE id = ANY($1::int8[])",
        sorted(wanted),
    )
    by_id = {r["id"]: r for r in found}
    out: dict[str, Any] = {}
    for column, (first, codes) in groups.items():
        labels = [by_id[int(rows["id"][i])][column] for i in first]
        names = sorted({x for x in labels if x is not None})
        position = {name: n for n, name in enumerate(names)}
        mapping = np.array([position.get(x, -1) if x is not None else -1 for x in labels])
        categories: Any = names
        out[column] = pd.Categorical.from_codes(mapping[codes], categories=categories)
    key = rows["group_key"].astype(np.int64)
    out["group_key"] = pd.array(key, dtype="Int64")
    if has_group_key:
        out["group_key"][key == 0] = pd.NA
    else:
        out["group_key"] = pd.array([pd.NA] * len(key), dtype="Int64")
    return out


async def incidents_frame(
    conn: Conn,
    start: datetime,
    end: datetime,
    scope: Scope | None = None,
    *,
    helper: Conn | None = None,
) -> pd.DataFrame:
    """Incidents opened in ``[start, end)`` within the scope, one row each.

    With ``helper`` (a second connection, idle) and a table of at least
    :data:`SPLIT_PAGES` pages, each connection reads half of the table's pages, both in
    one snapshot (``pg_export_snapshot``)."""
    has_group_key = await _has_group_key(conn)
    sql = _SELECT.format(group_key="group_key" if has_group_key else "NULL::text")
    scope = scope or Scope()
    args: list[Any] = [start, end]
    for column, value in (
        ("service", scope.service),
        ("team", scope.team),
        ("category", scope.category),
        ("severity", scope.severity),
    ):
        if value is not None:
            args.append(value)
            sql += f" AND {column} = ${len(args)}"
    if conn.is_in_transaction():  # the caller's snapshot
        return await _frame(conn, await _copy(conn, sql, args), has_group_key)
    # one snapshot for the rows and for the names of their hashes
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        pages = await conn.fetchval(_PAGES)
        if helper is None or pages < SPLIT_PAGES:
            return await _frame(conn, await _copy(conn, sql, args), has_group_key)
        # Two halves of the heap at once, the helper in this transaction's snapshot:
        # PostgreSQL's share of the work (scan, hashes, encoding) runs on two cores.
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        half = len(args) + 1
        async with helper.transaction(isolation="repeatable_read", readonly=True):
            await helper.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'")
            parts = await asyncio.gather(
                _copy(conn, sql + f" AND ctid < ${half}::tid", [*args, (pages // 2, 0)]),
                _copy(helper, sql + f" AND ctid >= ${half}::tid", [*args, (pages // 2, 0)]),
            )
        return await _frame(conn, np.concatenate(parts), has_group_key)


#: Heap pages (8 kB) from which a helper connection reads half the table (~100k rows).
SPLIT_PAGES = 4096
_PAGES = "SELECT (pg_relation_size('incidents') / current_setting('block_size')::int)::int"


def _snapshot_id(value: str) -> str:
    if not re.fullmatch(r"[0-9A-F]+-[0-9A-F]+-[0-9]+", value):
        raise RuntimeError(f"unexpected snapshot id {value!r}")
    return value


async def _copy(conn: Conn, sql: str, args: list[Any]) -> Any:
    """The rows of one COPY as a numpy structured array."""
    chunks: list[bytes] = []

    async def collect(chunk: bytes) -> None:  # no file: asyncpg would write from a thread
        chunks.append(chunk)

    await conn.copy_from_query(sql, *args, output=collect, format="binary")
    data = b"".join(chunks)
    if (len(data) - _HEADER - _TRAILER) % _ROW.itemsize:
        raise RuntimeError("unexpected COPY layout from PostgreSQL")
    return np.frombuffer(
        data, dtype=_ROW, offset=_HEADER, count=(len(data) - _HEADER - _TRAILER) // _ROW.itemsize
    )


async def _frame(conn: Conn, rows: Any, has_group_key: bool) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "id": rows["id"].astype(np.int64),
        "severity": rows["severity"].astype(np.int64),
        "reopen_count": rows["reopen_count"].astype(np.int64),
    }
    for name in _TIME_COLUMNS:
        columns[name] = _epoch_seconds(rows[name].astype(np.int64))
    columns.update(await _names(conn, rows, has_group_key))
    return pd.DataFrame(columns)[list(COLUMNS)]
