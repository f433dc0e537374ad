"""The audit log: append-only, hash-chained, every incident mutation and security event."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from firewatch.audit import chain
from firewatch.audit import service as audit
from firewatch.audit import store as audit_store
from firewatch.auth.keys import KeyringError
from firewatch.auth.principal import Principal
from firewatch.cli import cli
from firewatch.runtime import migrations
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings
from tests import servers

API = "/api/v1/incidents"


async def _entries(client: httpx.AsyncClient, **params: str) -> list[dict[str, object]]:
    r = await client.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


async def test_every_incident_mutation_is_audited_in_its_transaction(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    inc = (await client.post(API, json={"title": "audit me", "severity": "SEV2"})).json()
    ref = inc["id"]
    await client.patch(f"{API}/{ref}", json={"owner": "bob"}, headers={"If-Match": '"1"'})
    await client.post(f"{API}/{ref}/transitions", json={"to": "acknowledged"})
    await client.post(f"{API}/{ref}/comments", json={"body": "looking"})
    # a failed mutation (stale version) leaves no audit entry: same transaction
    stale = await client.patch(f"{API}/{ref}", json={"owner": "eve"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    actions = [e["action"] for e in await _entries(client, target=ref)]
    assert actions == [
        "incident.comment",
        "incident.transition",
        "incident.update",
        "incident.create",
    ]
    for entry in await _entries(client, target=ref):
        assert entry["actor"] == "test-admin"
        assert entry["client"] is not None
        assert entry["client"] != "127.0.0.1"
    update = (await _entries(client, target=ref, action="incident.update"))[0]
    assert update["before_digest"] == chain.digest({"owner": None})
    assert update["after_digest"] == chain.digest({"owner": "bob"})


async def test_record_inside_a_rolled_back_transaction_leaves_nothing(pool: PgPool) -> None:
    actor = Principal("tester", "system", "admin")
    before = await pool.fetchval("SELECT count(*) FROM audit_log")

    async def failing_change() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, actor, "thing.change", target="thing:1")
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == before


async def test_update_delete_truncate_are_refused(pool: PgPool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await audit.record(conn, Principal("x", "system", "admin"), "probe")
    await audit.seal_pending(pool, wait=True)
    for sql in (
        "UPDATE audit_log SET actor = 'mallory' WHERE id = (SELECT max(id) FROM audit_log)",
        "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
        "TRUNCATE audit_log CASCADE",
        "UPDATE audit_seal SET hash = '\\x00' WHERE seq = 1",
        "DELETE FROM audit_seal WHERE seq = (SELECT max(seq) FROM audit_seal)",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as_sole_sealer(pool, sql)


async def _as_sole_sealer(pool: PgPool, sql: str) -> None:
    """Run ``sql`` holding the sealer's lock: the background sealer locks audit_pending
    then audit_log, TRUNCATE ... CASCADE the other way round, and the two would
    deadlock instead of the trigger refusing the statement."""
    async with pool.acquire() as conn, conn.transaction():
        await audit_store.wait_seal_lock(conn)
        await conn.execute(sql)


async def test_sealed_chain_verifies(client: httpx.AsyncClient, pool: PgPool) -> None:
    await client.post(API, json={"title": "chain", "severity": "SEV4"})
    await audit.seal_pending(pool, wait=True)
    result = await audit.verify(pool)
    assert result.ok, result.broken
    assert result.checked >= 1
    assert len(result.head_hash) == 64


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def _seed_and_tamper(url: str, *, tamper: bool) -> tuple[int, int] | None:
    conn = await asyncpg.connect(url)
    try:
        if not tamper:
            for i in range(5):
                await conn.execute(
                    "INSERT INTO audit_log (actor, actor_kind, action, target) "
                    "VALUES ('alice', 'user', 'incident.create', $1)",
                    f"INC-{i + 1}",
                )
            return None
        # a superuser bypasses the trigger and rewrites history
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE target = 'INC-3'")
        entry_id = await conn.fetchval("SELECT id FROM audit_log WHERE target = 'INC-3'")
        seq = await conn.fetchval("SELECT seq FROM audit_seal WHERE entry_id = $1", entry_id)
        return int(seq), int(entry_id)
    finally:
        await conn.close()


def test_superuser_edit_is_found_by_audit_verify(
    admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    name, url = asyncio.run(servers.create_database(admin_database_url))
    try:
        asyncio.run(migrations.upgrade(url))
        asyncio.run(_seed_and_tamper(url, tamper=False))
        env = {
            "FIREWATCH_DATABASE_URL": url,
            "FIREWATCH_REDIS_URL": redis_url,
            "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
        }
        code, out, err = _cli(env, "audit", "verify")
        assert code == 0, err
        assert "audit chain OK: 5 entries" in out

        where = asyncio.run(_seed_and_tamper(url, tamper=True))
        assert where is not None
        seq, entry_id = where
        code, out, err = _cli(env, "audit", "verify")
        assert code == 1
        assert f"chain broken at seq {seq} (audit entry {entry_id})" in err
        assert "edited" in err
    finally:
        asyncio.run(servers.drop_database(admin_database_url, name))


async def test_security_events_are_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    from firewatch.auth.principal import Role
    from tests.conftest import make_user

    name, _pw = await make_user(app, Role.VIEWER)
    await client.patch(f"/api/v1/users/{name}", json={"role": "responder"})
    key = (
        await client.post(
            "/api/v1/integrations/keys", json={"name": f"am-{name}", "scopes": ["alerts:write"]}
        )
    ).json()
    await client.delete(f"/api/v1/integrations/keys/{key['id']}")
    assert await _entries(client, action="user.create", target=f"user:{name}")
    role = await _entries(client, action="user.role_change", target=f"user:{name}")
    assert role[0]["details"] == {"from": "viewer", "to": "responder"}
    assert await _entries(client, action="apikey.create", target=f"apikey:{key['id']}")
    assert await _entries(client, action="apikey.revoke", target=f"apikey:{key['id']}")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 1)),
        base_url="http://t",
    ) as anon:
        await anon.post("/api/v1/auth/login", json={"username": name, "password": "wrong-one-123"})
    fails = await _entries(client, action="auth.login", target=f"user:{name}")
    assert fails[0]["outcome"] == "denied"
    assert "wrong-one-123" not in str(fails)


def test_audit_hmac_key_is_private_and_long_enough(settings: Settings, tmp_path: Path) -> None:
    """With the key, a client pseudonym in the audit log is an address again: a
    generated key file other users can read is refused (as the JWT keyring is), and so
    is a key of under 16 bytes from any source, without echoing it."""
    own = settings.model_copy(update={"data_dir": tmp_path / "data"})
    key = audit.load_hmac_key(own)  # generated
    path = audit.secrets_dir(own) / audit.HMAC_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 16
    assert audit.load_hmac_key(own) == key  # stable once made
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        audit.load_hmac_key(own)

    mounted = tmp_path / "mounted-key"
    mounted.write_bytes(b"short-key\n")
    os.chmod(mounted, 0o644)  # a mounted secret sets its own mode
    with pytest.raises(KeyringError, match="9 bytes") as info:
        audit.load_hmac_key(own.model_copy(update={"audit_hmac_key_file": mounted}))
    assert "short-key" not in str(info.value)
    mounted.write_bytes(b"a-mounted-key-long-enough\n")
    from_file = own.model_copy(update={"audit_hmac_key_file": mounted})
    assert audit.load_hmac_key(from_file) == b"a-mounted-key-long-enough"

    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(audit_hmac_key=SecretStr("short-key"))


def test_serve_refuses_a_shared_audit_key_before_starting(
    settings: Settings, tmp_path: Path
) -> None:
    """``firewatch serve`` stops with exit 2 and the fix in its message, not a worker
    crash after it started listening."""
    data = tmp_path / "serve-data"
    audit.load_hmac_key(settings.model_copy(update={"data_dir": data}))
    os.chmod(
        audit.secrets_dir(settings.model_copy(update={"data_dir": data})) / audit.HMAC_KEY_NAME,
        0o640,
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FIREWATCH_")},
        "FIREWATCH_DATABASE_URL": settings.database_url.get_secret_value()
        if settings.database_url
        else "",
        "FIREWATCH_REDIS_URL": settings.redis_url.get_secret_value() if settings.redis_url else "",
        "FIREWATCH_DATA_DIR": str(data),
        "FIREWATCH_PORT": str(servers.free_port()),  # never reached: it stops before
    }
    done = subprocess.run(
        [sys.executable, "-m", "firewatch", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "audit-hmac.key is readable by other users" in done.stderr
    assert "chmod 600" in done.stderr
