"""Audit use cases: record an entry inside the caller's transaction, seal, verify.

Any feature audits a change by calling :func:`record` with the connection of the
transaction that makes the change, so the entry commits (or rolls back) with it::

    async with pool.acquire() as conn, conn.transaction():
        ...change...
        await audit.record(conn, principal, "thing.changed", target="thing:42",
                           before=old, after=new)

Entries are inserted unsealed: writers never wait for each other on the chain. The
sealer (one at a time, under an advisory lock) appends committed entries to the
hash chain in the order they became visible; see docs/adr/ADR-004-audit-chain.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from firewatch.audit import chain, store
from firewatch.auth.keys import KeyringError, require_private_mode
from firewatch.auth.principal import Principal
from firewatch.observability import tracing
from firewatch.runtime.database import Conn, PgPool
from firewatch.settings import Settings

log = structlog.get_logger(__name__)

SEAL_BATCH = 1000
HMAC_KEY_NAME = "audit-hmac.key"
MIN_HMAC_KEY_BYTES = 16


async def record(
    conn: Conn,
    actor: Principal,
    action: str,
    *,
    target: str | None = None,
    before: Any = None,
    after: Any = None,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append an audit entry in the caller's transaction; returns its id.

    ``before``/``after`` are state snapshots: only their SHA-256 digests are stored.
    ``details`` is stored as is: keep secrets and personal data out of it.
    """
    return await store.insert(
        conn,
        actor=actor.subject,
        actor_kind=actor.kind,
        action=action,
        target=target,
        before_digest=chain.digest(before),
        after_digest=chain.digest(after),
        client=actor.client,
        outcome=outcome,
        details=dict(details or {}),
    )


async def seal_pending(pool: PgPool, *, wait: bool = False, batch: int = SEAL_BATCH) -> int:
    """Append committed, unsealed entries to the chain; returns how many were sealed.

    Without ``wait`` a call that finds another sealer at work returns 0 at once.
    """
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if wait:
                await store.wait_seal_lock(conn)
            elif not await store.try_seal_lock(conn):
                return total
            last = await store.last_seal(conn)
            seq, prev = (last["seq"], bytes(last["hash"])) if last else (0, chain.GENESIS)
            entries = await store.take_pending(conn, batch)
            seals = []
            for entry in entries:
                seq += 1
                digest = chain.link_hash(prev, dict(entry), seq)
                seals.append((seq, entry["id"], prev, digest))
                prev = digest
            if seals:
                await store.insert_seals(conn, seals)
        total += len(seals)
        if len(entries) < batch:
            return total


async def run_sealer(pool: PgPool, interval: float) -> None:
    """Background task of every worker: seal every ``interval`` seconds until cancelled."""
    while True:
        try:
            with tracing.untraced():  # a poll per interval: not worth a trace each
                await seal_pending(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep sealing after a transient database error
            log.warning("audit sealing failed; will retry", error_type=type(exc).__name__)
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    head_seq: int
    head_hash: str
    broken: chain.BrokenLink | None
    unsealed: list[int]

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.unsealed


async def verify(pool: PgPool, *, page: int = 5000) -> VerifyResult:
    """Walk the whole chain; stop at the first broken link."""
    walker = chain.ChainWalker()
    async with pool.acquire() as conn:
        after = 0
        while True:
            rows = await store.chain_page(conn, after, page)
            links = [
                chain.Link(
                    seq=r["seq"],
                    prev_hash=bytes(r["prev_hash"]),
                    hash=bytes(r["hash"]),
                    entry=dict(r) if r["id"] is not None else None,
                )
                for r in rows
            ]
            broken = walker.feed(links)
            if broken is not None:
                return VerifyResult(walker.checked, walker.expected_seq - 1, "", broken, [])
            if len(rows) < page:
                break
            after = rows[-1]["seq"]
        unsealed = await store.unaccounted_entries(conn)
    return VerifyResult(
        walker.checked, walker.expected_seq - 1, walker.prev_hash.hex(), None, unsealed
    )


# --- client pseudonyms --------------------------------------------------------------


def load_hmac_key(settings: Settings) -> bytes:
    """The key that pseudonymises client addresses: env, secret file, or data dir.

    A generated key lives in ``$DATA_DIR/secrets/audit-hmac.key`` with mode 0600, and
    is refused if other users can read it (as the JWT keyring is): with the key, a
    pseudonym is an address again. A key of under 16 bytes is refused wherever it
    comes from (an empty secret file would pseudonymise with an empty key).
    Replicas must share one key (set FIREWATCH_AUDIT_HMAC_KEY or _FILE) for their
    pseudonyms to agree.
    """
    if settings.audit_hmac_key is not None:  # its length is checked by Settings
        return settings.audit_hmac_key.get_secret_value().encode()
    if settings.audit_hmac_key_file is not None:
        source = settings.audit_hmac_key_file
    else:
        source = secrets_dir(settings) / HMAC_KEY_NAME
        if not source.exists():
            source.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = source.with_name(f".{source.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_hex(32).encode())
            try:
                os.link(tmp, source)
            except FileExistsError:
                pass  # another worker created it first
            finally:
                tmp.unlink()
        require_private_mode(source)
    key = source.read_bytes().strip()
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise KeyringError(
            f"{source} holds an audit HMAC key of {len(key)} bytes; at least "
            f"{MIN_HMAC_KEY_BYTES} are needed"
        )
    return key


def secrets_dir(settings: Settings) -> Path:
    return settings.data_dir / "secrets"


class Pseudonymiser:
    """HMAC-SHA256(key, address), truncated: stable per address, useless without the key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[str, str] = {}

    def __call__(self, address: str | None) -> str | None:
        if address is None:
            return None
        hit = self._cache.get(address)
        if hit is None:
            hit = hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[address] = hit
        return hit
