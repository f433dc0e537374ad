"""Integration API key authentication (kept apart from service.py to avoid an
import cycle: rbac -> dependencies -> here, while service.py needs rbac)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from firewatch.auth import apikeys, store
from firewatch.auth.principal import Principal
from firewatch.errors import UnauthorizedError
from firewatch.runtime.database import PgPool


def _now() -> datetime:
    return datetime.now(UTC)


async def authenticate_api_key(pool: PgPool, key: str, client: str | None) -> Principal:
    parsed = apikeys.parse(key)
    invalid = UnauthorizedError("the API key is invalid or revoked")
    if parsed is None:
        raise invalid
    key_id, secret = parsed
    async with pool.acquire() as conn:
        row = await store.get_api_key_secret(conn, key_id)
        if row is None or row["revoked_at"] is not None:
            raise invalid
        if not apikeys.secret_matches(secret, bytes(row["secret_hash"])):
            raise invalid
        last = row["last_used_at"]
        if last is None or _now() - last > timedelta(seconds=60):
            await store.touch_api_key(conn, key_id)
    return Principal(
        subject=row["name"],
        kind="integration",
        role="integration",
        scopes=frozenset(row["scopes"]),
        client=client,
        token_id=key_id,
    )
