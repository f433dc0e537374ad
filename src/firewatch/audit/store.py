"""Every SQL statement about the audit log and its seals."""

from __future__ import annotations

from typing import Any

import asyncpg

from firewatch.runtime.database import Conn

# "fw-audit" as a bigint: one sealer at a time across every worker and replica.
SEAL_LOCK_KEY = 0x66772D6175646974

ENTRY_COLUMNS = (
    "id, at, actor, actor_kind, action, target, before_digest, after_digest, client, "
    "outcome, details"
)


async def insert(
    conn: Conn,
    *,
    actor: str,
    actor_kind: str,
    action: str,
    target: str | None,
    before_digest: str | None,
    after_digest: str | None,
    client: str | None,
    outcome: str,
    details: dict[str, Any],
) -> int:
    entry_id = await conn.fetchval(
        """
        INSERT INTO audit_log (actor, actor_kind, action, target, before_digest,
                               after_digest, client, outcome, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING id
        """,
        actor,
        actor_kind,
        action,
        target,
        before_digest,
        after_digest,
        client,
        outcome,
        details,
    )
    assert isinstance(entry_id, int)
    return entry_id


async def try_seal_lock(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_KEY))


async def wait_seal_lock(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SEAL_LOCK_KEY)


async def last_seal(conn: Conn) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT seq, hash FROM audit_seal ORDER BY seq DESC LIMIT 1")


async def take_pending(conn: Conn, limit: int) -> list[asyncpg.Record]:
    """Dequeue up to ``limit`` committed, unsealed entries (oldest first).

    ``= ANY (ARRAY(...))``, not ``IN (SELECT ...)``: with ``IN`` the planner hashed
    the batch and scanned the whole queue (and, for a young log, the whole of
    ``audit_log``) once per batch, so a backlog of N entries cost O(N^2) to seal.
    The arrays keep both steps on the primary keys.
    """
    return await conn.fetch(
        f"""
        WITH p AS (
            DELETE FROM audit_pending
             WHERE entry_id = ANY (ARRAY(
                 SELECT entry_id FROM audit_pending ORDER BY entry_id LIMIT $1))
            RETURNING entry_id
        )
        SELECT {ENTRY_COLUMNS} FROM audit_log
         WHERE id = ANY (ARRAY(SELECT entry_id FROM p)) ORDER BY id
        """,
        limit,
    )


async def insert_seals(conn: Conn, seals: list[tuple[int, int, bytes, bytes]]) -> None:
    """One statement for the batch: an ``executemany`` ran the INSERT once per seal,
    and PostgreSQL's per-statement cost was most of the sealer's (see ADR-005)."""
    seq, entry_id, prev_hash, hash_ = zip(*seals, strict=True)
    await conn.execute(
        "INSERT INTO audit_seal (seq, entry_id, prev_hash, hash)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
        seq,
        entry_id,
        prev_hash,
        hash_,
    )


async def chain_page(conn: Conn, after_seq: int, limit: int) -> list[asyncpg.Record]:
    """Seals in seq order with their entries (LEFT JOIN: a vanished entry shows as NULL)."""
    return await conn.fetch(
        """
        SELECT s.seq, s.prev_hash, s.hash, s.entry_id AS sealed_id,
               a.id, a.at, a.actor, a.actor_kind, a.action, a.target, a.before_digest,
               a.after_digest, a.client, a.outcome, a.details
          FROM audit_seal s LEFT JOIN audit_log a ON a.id = s.entry_id
         WHERE s.seq > $1
         ORDER BY s.seq
         LIMIT $2
        """,
        after_seq,
        limit,
    )


async def unaccounted_entries(conn: Conn, limit: int = 10) -> list[int]:
    """Entries neither sealed nor waiting to be (their seal was removed)."""
    rows = await conn.fetch(
        """
        SELECT a.id FROM audit_log a
         WHERE NOT EXISTS (SELECT 1 FROM audit_seal s WHERE s.entry_id = a.id)
           AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.entry_id = a.id)
         ORDER BY a.id LIMIT $1
        """,
        limit,
    )
    return [r["id"] for r in rows]


async def pending_count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM audit_pending"))


async def list_entries(
    conn: Conn,
    *,
    before_id: int | None,
    limit: int,
    action: str | None,
    target: str | None,
    actor: str | None,
) -> list[asyncpg.Record]:
    where: list[str] = []
    args: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        args.append(value)
        where.append(fragment.format(n=len(args)))

    if before_id is not None:
        add("a.id < ${n}", before_id)
    if action is not None:
        add("a.action = ${n}", action)
    if target is not None:
        add("a.target = ${n}", target)
    if actor is not None:
        add("a.actor = ${n}", actor)
    args.append(limit)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await conn.fetch(
        f"""
        SELECT a.id, a.at, a.actor, a.actor_kind, a.action, a.target, a.before_digest,
               a.after_digest, a.client, a.outcome, a.details, s.seq, s.hash
          FROM audit_log a LEFT JOIN audit_seal s ON s.entry_id = a.id
          {clause}
         ORDER BY a.id DESC
         LIMIT ${len(args)}
        """,
        *args,
    )
