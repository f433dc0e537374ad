"""Signing keys: data-dir keyring mode 0600, rotation with overlap, emergency retirement."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from firewatch.auth import keys
from firewatch.auth.tokens import InvalidTokenError, TokenService


def _service(path: Path, *, ttl: int = 900, mounted: bool = False) -> TokenService:
    store = keys.KeyStore(path, alg="ES256", access_ttl=ttl, leeway=30, mounted=mounted)
    return TokenService(store, issuer="fw", audience="api", ttl=ttl, leeway=30, cache_size=100)


def test_keyring_is_created_private_and_never_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / keys.KEYRING_NAME
    keys.ensure_keyring(path, "ES256")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(keys.KeyringError, match="chmod 600") as info:
        keys.read_keyring(path, check_mode=True)
    assert "PRIVATE KEY" not in str(info.value)


def test_garbage_keyring_error_names_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    pem = "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF"
    entry = {"kid": "a", "alg": "ES256", "private_key": pem, "created_at": 1}
    path.write_text(json.dumps({"version": 1, "keys": [entry]}))
    with pytest.raises(keys.KeyringError) as info:
        keys.read_keyring(path, check_mode=False)
    assert "SECRETSTUFF" not in str(info.value)


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(tmp_path: Path) -> None:
    path = tmp_path / keys.KEYRING_NAME
    keys.ensure_keyring(path, "ES256")
    before = _service(path)
    old = before.issue("alice", "viewer", version=1, sid=None)
    old_kid = before.keys.signing_key.kid

    fresh, dropped = keys.rotate(path, "ES256", access_ttl=900, leeway=30)
    assert dropped == []
    after = _service(path)
    assert after.keys.signing_key.kid == fresh.kid != old_kid
    assert after.verify(old.token).subject == "alice"  # old key still verifies
    assert {k["kid"] for k in after.keys.jwks()["keys"]} == {old_kid, fresh.kid}
    new = after.issue("bob", "viewer", version=1, sid=None)
    assert before.verify(new.token).subject == "bob"  # a running worker picks up the new key


def test_retired_keys_are_dropped_once_their_tokens_expired(tmp_path: Path) -> None:
    path = tmp_path / keys.KEYRING_NAME
    keys.ensure_keyring(path, "ES256")
    first, _ = keys.rotate(path, "ES256", access_ttl=60, leeway=0)
    doc = json.loads(path.read_text())
    for entry in doc["keys"]:  # pretend the first rotation was long ago
        if entry["retired_at"] is not None:
            entry["retired_at"] = int(time.time()) - 3600
    path.write_text(json.dumps(doc))
    _second, dropped = keys.rotate(path, "ES256", access_ttl=60, leeway=0)
    assert len(dropped) == 1
    assert first.kid not in dropped


def test_emergency_retirement_invalidates_old_tokens(tmp_path: Path) -> None:
    path = tmp_path / keys.KEYRING_NAME
    keys.ensure_keyring(path, "ES256")
    svc = _service(path)
    token = svc.issue("alice", "admin", version=1, sid=None).token
    assert svc.verify(token).subject == "alice"  # now cached
    keys.rotate(path, "ES256", access_ttl=900, leeway=30, retire_now=True)
    svc.keys.reload(force=True)
    with pytest.raises(InvalidTokenError):
        svc.verify(token)  # the cache was cleared with the key set


def test_mounted_keyring_is_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "mounted.json"
    keys.ensure_keyring(path, "ES256")
    os.chmod(path, 0o640)  # a mounted secret need not be 0600
    svc = _service(path, mounted=True)
    assert svc.verify(svc.issue("x", "viewer", version=1, sid=None).token).subject == "x"
