"""Every SQL statement about users, API keys and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from firewatch.runtime.database import Conn

USER_COLUMNS = (
    "id, username, role, password_hash, disabled, token_version, failed_logins, locked_until, "
    "created_at, updated_at, password_changed_at, last_login_at"
)
KEY_COLUMNS = "id, key_id, name, scopes, created_by, created_at, last_used_at, revoked_at"


# --- users ---------------------------------------------------------------------------


async def get_user(conn: Conn, username: str, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE username = $1{lock}", username
    )


async def get_user_by_id(conn: Conn, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)


async def create_user(
    conn: Conn, username: str, role: str, password_hash: str
) -> asyncpg.Record | None:
    """The new user, or None when the username is taken."""
    return await conn.fetchrow(
        f"""
        INSERT INTO users (username, role, password_hash) VALUES ($1, $2, $3)
        ON CONFLICT (username) DO NOTHING
        RETURNING {USER_COLUMNS}
        """,
        username,
        role,
        password_hash,
    )


async def create_first_user(
    conn: Conn, username: str, role: str, password_hash: str
) -> asyncpg.Record | None:
    """Create the user only if no user exists at all (bootstrap); caller holds a lock."""
    return await conn.fetchrow(
        f"""
        INSERT INTO users (username, role, password_hash)
        SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM users)
        RETURNING {USER_COLUMNS}
        """,
        username,
        role,
        password_hash,
    )


async def other_enabled_admins(conn: Conn, user_id: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND id <> $1",
            user_id,
        )
    )


async def count_users(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM users"))


async def list_users(conn: Conn, *, after_id: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )


async def set_role(conn: Conn, user_id: int, role: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"UPDATE users SET role = $2, updated_at = now(), token_version = token_version + 1 "
        f"WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        role,
    )
    assert row is not None
    return row


async def set_disabled(conn: Conn, user_id: int, disabled: bool) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE users SET disabled = $2, updated_at = now(), failed_logins = 0,
                         locked_until = NULL, token_version = token_version + 1
         WHERE id = $1 RETURNING {USER_COLUMNS}
        """,
        user_id,
        disabled,
    )
    assert row is not None
    return row


async def set_password(conn: Conn, user_id: int, password_hash: str) -> asyncpg.Record:
    """A new password: older tokens of the user stop working (token_version + 1)."""
    row = await conn.fetchrow(
        f"""
        UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now(),
                         failed_logins = 0, locked_until = NULL,
                         token_version = token_version + 1
         WHERE id = $1 RETURNING {USER_COLUMNS}
        """,
        user_id,
        password_hash,
    )
    assert row is not None
    return row


async def rehash_password(conn: Conn, user_id: int, password_hash: str) -> None:
    """The same password under new hashing parameters (on login)."""
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def record_login_ok(conn: Conn, user_id: int) -> None:
    await conn.execute(
        "UPDATE users SET last_login_at = now(), failed_logins = 0 WHERE id = $1", user_id
    )


async def record_login_failure(conn: Conn, user_id: int, locked_until: datetime | None) -> None:
    await conn.execute(
        """
        UPDATE users SET failed_logins = failed_logins + 1,
                         locked_until = COALESCE($2, locked_until)
         WHERE id = $1
        """,
        user_id,
        locked_until,
    )


# --- refresh tokens --------------------------------------------------------------------


async def insert_refresh(
    conn: Conn, token_hash: bytes, family: uuid.UUID, user_id: int, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, expires_at) "
        "VALUES ($1, $2, $3, $4)",
        token_hash,
        family,
        user_id,
        expires_at,
    )


async def get_refresh_for_update(conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT r.id, r.family, r.user_id, r.expires_at, r.rotated_at, r.revoked_at,
               u.username, u.role, u.disabled, u.token_version
          FROM refresh_tokens r JOIN users u ON u.id = r.user_id
         WHERE r.token_hash = $1
           FOR UPDATE OF r
        """,
        token_hash,
    )


async def mark_rotated(conn: Conn, token_id: int) -> None:
    await conn.execute("UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1", token_id)


async def revoke_family(conn: Conn, family: uuid.UUID) -> int:
    result = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
        family,
    )
    return int(result.split()[-1])


async def revoke_user_tokens(conn: Conn, user_id: int) -> int:
    result = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
    return int(result.split()[-1])


# --- API keys ---------------------------------------------------------------------------


async def create_api_key(
    conn: Conn, key_id: str, name: str, scopes: list[str], secret_hash: bytes, created_by: str
) -> asyncpg.Record | None:
    """The new key, or None when an active key already has this name."""
    return await conn.fetchrow(
        f"""
        INSERT INTO api_keys (key_id, name, scopes, secret_hash, created_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
        RETURNING {KEY_COLUMNS}
        """,
        key_id,
        name,
        scopes,
        secret_hash,
        created_by,
    )


async def get_api_key_secret(conn: Conn, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT key_id, name, scopes, secret_hash, revoked_at, last_used_at "
        "FROM api_keys WHERE key_id = $1",
        key_id,
    )


async def touch_api_key(conn: Conn, key_id: str) -> None:
    """Record use, at most once a minute per key (no write per request)."""
    await conn.execute(
        """
        UPDATE api_keys SET last_used_at = now()
         WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '60 s')
        """,
        key_id,
    )


async def list_api_keys(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id DESC LIMIT 1000")


async def revoke_api_key(conn: Conn, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE api_keys SET revoked_at = now()
         WHERE key_id = $1 AND revoked_at IS NULL
        RETURNING {KEY_COLUMNS}
        """,
        key_id,
    )


async def get_api_key(conn: Conn, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
