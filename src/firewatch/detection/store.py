"""Every SQL statement of signals and detection models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from firewatch.runtime.database import Conn

STREAM_COLUMNS = (
    "s.id, s.name, s.description, s.labels, s.severity, s.service, s.team, s.created_by, "
    "s.created_at, s.updated_at, s.last_ts, s.scored_until, s.recent_flags, s.in_anomaly"
)
MODEL_COLUMNS = (
    "m.id, m.stream_id, m.version, m.status, m.algorithm, m.path, m.sha256, m.threshold, "
    "m.params, m.data_from, m.data_to, m.train_points, m.evaluation, m.created_by, "
    "m.created_at, m.activated_at, m.quarantined_at, m.quarantine_reason"
)


async def upsert_stream(
    conn: Conn,
    *,
    name: str,
    description: str,
    labels: dict[str, str],
    severity: int,
    service: str | None,
    team: str | None,
    actor: str,
) -> tuple[asyncpg.Record, bool]:
    row = await conn.fetchrow(
        f"""
        INSERT INTO signal_streams AS s (name, description, labels, severity, service, team,
                                         created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (name) DO UPDATE
           SET description = EXCLUDED.description, labels = EXCLUDED.labels,
               severity = EXCLUDED.severity, service = EXCLUDED.service,
               team = EXCLUDED.team, updated_at = now()
        RETURNING {STREAM_COLUMNS}, (xmax = 0) AS created
        """,
        name,
        description,
        labels,
        severity,
        service,
        team,
        actor,
    )
    assert row is not None
    return row, bool(row["created"])


async def get_stream(conn: Conn, name: str, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {STREAM_COLUMNS} FROM signal_streams s WHERE s.name = $1{lock}", name
    )


async def list_streams(conn: Conn, *, after_id: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {STREAM_COLUMNS} FROM signal_streams s WHERE s.id > $1 ORDER BY s.id LIMIT $2",
        after_id,
        limit,
    )


async def lock_streams(conn: Conn, names: list[str]) -> list[asyncpg.Record]:
    """Lock the named streams (in id order, so concurrent batches cannot deadlock)
    and return each with its active model, if any."""
    return await conn.fetch(
        f"""
        SELECT {STREAM_COLUMNS}, m.id AS model_id, m.version AS model_version,
               m.path AS model_path, m.sha256 AS model_sha256,
               m.threshold AS model_threshold, m.params AS model_params
          FROM signal_streams s
          LEFT JOIN detection_models m ON m.stream_id = s.id AND m.status = 'active'
         WHERE s.name = ANY($1::text[])
         ORDER BY s.id
           FOR UPDATE OF s
        """,
        names,
    )


async def existing_timestamps(conn: Conn, stream_id: int, ts: list[datetime]) -> set[datetime]:
    rows = await conn.fetch(
        "SELECT ts FROM signal_points WHERE stream_id = $1 AND ts = ANY($2::timestamptz[])",
        stream_id,
        ts,
    )
    return {r["ts"] for r in rows}


async def history(
    conn: Conn, stream_id: int, before: datetime, limit: int
) -> tuple[list[datetime], list[float], list[bool | None]]:
    """The ``limit`` points before ``before``, oldest first, with their anomaly flags."""
    rows = await conn.fetch(
        """
        SELECT ts, value, anomaly FROM signal_points
         WHERE stream_id = $1 AND ts < $2
         ORDER BY ts DESC
         LIMIT $3
        """,
        stream_id,
        before,
        limit,
    )
    rows.reverse()
    return [r["ts"] for r in rows], [r["value"] for r in rows], [r["anomaly"] for r in rows]


async def insert_points(
    conn: Conn,
    stream_id: int,
    *,
    ts: list[datetime],
    values: list[float],
    labels: list[dict[str, str] | None],
    scores: list[float | None],
    anomaly: list[bool | None],
    alarm: list[bool | None],
    model_id: int | None,
) -> int:
    """Insert new points (the caller filtered known timestamps; a racing duplicate is
    ignored). Returns how many rows were inserted."""
    result = await conn.execute(
        """
        INSERT INTO signal_points (stream_id, ts, value, labels, score, anomaly, alarm, model_id)
        SELECT $1, t.ts, t.value, t.labels, t.score, t.anomaly, t.alarm, $8
          FROM unnest($2::timestamptz[], $3::float8[], $4::jsonb[], $5::real[],
                      $6::boolean[], $7::boolean[])
               AS t(ts, value, labels, score, anomaly, alarm)
        ON CONFLICT (stream_id, ts) DO NOTHING
        """,
        stream_id,
        ts,
        values,
        labels,
        scores,
        anomaly,
        alarm,
        model_id,
    )
    return int(result.rsplit(" ", 1)[-1])


async def update_stream_state(
    conn: Conn,
    stream_id: int,
    *,
    last_ts: datetime | None,
    scored_until: datetime | None,
    recent_flags: list[bool],
    in_anomaly: bool,
) -> None:
    await conn.execute(
        """
        UPDATE signal_streams
           SET last_ts = GREATEST(last_ts, $2), scored_until = GREATEST(scored_until, $3),
               recent_flags = $4, in_anomaly = $5
         WHERE id = $1
        """,
        stream_id,
        last_ts,
        scored_until,
        recent_flags,
        in_anomaly,
    )


async def points_between(
    conn: Conn, stream_id: int, start: datetime | None, end: datetime | None, limit: int
) -> list[asyncpg.Record]:
    """Points in ``[start, end)`` (either open), the newest ``limit``, oldest first."""
    rows = await conn.fetch(
        """
        SELECT ts, value, labels, score, anomaly, alarm, model_id FROM signal_points
         WHERE stream_id = $1
           AND ($2::timestamptz IS NULL OR ts >= $2)
           AND ($3::timestamptz IS NULL OR ts < $3)
         ORDER BY ts DESC
         LIMIT $4
        """,
        stream_id,
        start,
        end,
        limit,
    )
    rows.reverse()
    return rows


# --- models ---


async def next_model_version(conn: Conn, stream_id: int) -> int:
    version = await conn.fetchval(
        "SELECT coalesce(max(version), 0) + 1 FROM detection_models WHERE stream_id = $1",
        stream_id,
    )
    return int(version)


async def insert_model(
    conn: Conn,
    *,
    stream_id: int,
    version: int,
    algorithm: str,
    path: str,
    sha256: str,
    threshold: float,
    params: dict[str, Any],
    data_from: datetime | None,
    data_to: datetime | None,
    train_points: int,
    evaluation: dict[str, Any],
    actor: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        INSERT INTO detection_models AS m (stream_id, version, algorithm, path, sha256,
            threshold, params, data_from, data_to, train_points, evaluation, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        RETURNING {MODEL_COLUMNS}
        """,
        stream_id,
        version,
        algorithm,
        path,
        sha256,
        threshold,
        params,
        data_from,
        data_to,
        train_points,
        evaluation,
        actor,
    )
    assert row is not None
    return row


async def list_models(conn: Conn, stream_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {MODEL_COLUMNS} FROM detection_models m WHERE m.stream_id = $1 "
        "ORDER BY m.version DESC",
        stream_id,
    )


async def get_model(conn: Conn, stream_id: int, version: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {MODEL_COLUMNS} FROM detection_models m "
        "WHERE m.stream_id = $1 AND m.version = $2 FOR UPDATE",
        stream_id,
        version,
    )


async def active_model(conn: Conn, stream_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {MODEL_COLUMNS} FROM detection_models m "
        "WHERE m.stream_id = $1 AND m.status = 'active'",
        stream_id,
    )


async def previous_good_model(conn: Conn, stream_id: int, exclude_id: int) -> asyncpg.Record | None:
    """The most recently activated retired model other than ``exclude_id``."""
    return await conn.fetchrow(
        f"""
        SELECT {MODEL_COLUMNS} FROM detection_models m
         WHERE m.stream_id = $1 AND m.id <> $2 AND m.status = 'retired'
           AND m.activated_at IS NOT NULL
         ORDER BY m.activated_at DESC
         LIMIT 1
        """,
        stream_id,
        exclude_id,
    )


async def set_model_status(
    conn: Conn, model_id: int, status: str, *, reason: str | None = None
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE detection_models AS m
           SET status = $2,
               activated_at = CASE WHEN $2 = 'active' THEN now() ELSE activated_at END,
               quarantined_at = CASE WHEN $2 = 'quarantined' THEN now()
                                     ELSE quarantined_at END,
               quarantine_reason = CASE WHEN $2 = 'quarantined' THEN $3
                                        ELSE quarantine_reason END
         WHERE id = $1
        RETURNING {MODEL_COLUMNS}
        """,
        model_id,
        status,
        reason,
    )
    assert row is not None
    return row


async def add_model_event(
    conn: Conn, model_id: int, *, actor: str, action: str, note: str | None = None
) -> None:
    await conn.execute(
        "INSERT INTO detection_model_events (model_id, actor, action, note) "
        "VALUES ($1, $2, $3, $4)",
        model_id,
        actor,
        action,
        note,
    )


async def model_events(conn: Conn, model_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, at, actor, action, note FROM detection_model_events "
        "WHERE model_id = $1 ORDER BY id",
        model_id,
    )


async def record_drift(
    conn: Conn,
    stream_id: int,
    *,
    psi: float,
    level: str,
    reference_seconds: float,
    recent_seconds: float,
    reference_points: int,
    recent_points: int,
) -> None:
    """Keep the latest drift check of a stream (``firewatch_detection_drift_psi``)."""
    await conn.execute(
        """
        INSERT INTO signal_drift (stream_id, psi, level, reference_seconds, recent_seconds,
                                  reference_points, recent_points)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (stream_id) DO UPDATE
           SET psi = EXCLUDED.psi, level = EXCLUDED.level,
               reference_seconds = EXCLUDED.reference_seconds,
               recent_seconds = EXCLUDED.recent_seconds,
               reference_points = EXCLUDED.reference_points,
               recent_points = EXCLUDED.recent_points, checked_at = now()
        """,
        stream_id,
        psi,
        level,
        reference_seconds,
        recent_seconds,
        reference_points,
        recent_points,
    )
