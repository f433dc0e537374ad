"""Headers that authenticate the bench against firewatch's /api/v1.

The bench signs in the way a client does after logging in: with an ES256 access
token of an admin user, minted by firewatch's own helper
(:func:`firewatch.auth.service.issue_token`, the same as ``firewatch token issue``).
The token must be signed by the keyring the server verifies with, so both sides
derive the keyring path from the database URL: :func:`server_env` points the
server at it (``FIREWATCH_JWT_KEYS_FILE``) and :func:`api_headers` signs with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import tempfile
from pathlib import Path

from firewatch.auth import service, store
from firewatch.auth.keys import ensure_keyring
from firewatch.auth.runtime import make_tokens, open_keystore
from firewatch.runtime.database import create_pool
from firewatch.settings import Settings

BENCH_USER = "bench-admin"
TOKEN_TTL = 3600  # longer than any bench run


def _keyring(database_url: str) -> Path:
    tag = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"firewatch-bench-{tag}" / "jwt-keys.json"


def forget(database_url: str) -> None:
    """Remove the keyring of ``database_url`` (called when the bench drops that database)."""
    shutil.rmtree(_keyring(database_url).parent, ignore_errors=True)


def server_env(database_url: str) -> dict[str, str]:
    """Env for the firewatch server under load: the shared keyring, and a per-user
    request budget no bench reaches (the budget is still counted on every request)."""
    return {
        "FIREWATCH_JWT_KEYS_FILE": str(_keyring(database_url)),
        "FIREWATCH_RATE_LIMIT_API_PER_MINUTE": "10000000",
    }


async def _mint(database_url: str, keyring: Path) -> str:
    settings = Settings(jwt_keys_file=keyring)
    tokens = make_tokens(settings, open_keystore(settings))
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if await store.get_user(conn, BENCH_USER) is None:
                # the password is never used: the bench only needs a valid token
                unusable = "$argon2id$v=19$m=65536,t=3,p=4$" + secrets.token_hex(16)
                await store.create_user(conn, BENCH_USER, "admin", unusable)
        return await service.issue_token(pool, tokens, BENCH_USER, ttl=TOKEN_TTL)
    finally:
        await pool.close()


def api_headers(database_url: str) -> dict[str, str]:
    """Headers for /api/v1 requests to a firewatch using ``database_url`` (migrated)."""
    keyring = _keyring(database_url)
    ensure_keyring(keyring, "ES256")
    token = asyncio.run(_mint(database_url, keyring))
    return {"Authorization": f"Bearer {token}"}
