"""The JWT signing keyring: generated in the data dir (mode 0600) or a mounted file.

The keyring is one JSON file holding every key that may still verify a token::

    {"version": 1, "keys": [{"kid": "...", "alg": "ES256", "private_key": "PEM",
                             "created_at": 1764200000, "retired_at": null}]}

The newest key that is not retired signs. ``firewatch keys rotate`` retires the
signing key (it stops signing but keeps verifying) and adds a new one; a retired
key is dropped once every token it signed has expired (``retired_at + access TTL
+ leeway``). Workers re-read the file when it changes, so a rotation needs no
restart. Key material never reaches logs, settings dumps or the environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

KEYRING_NAME = "jwt-keys.json"
RELOAD_INTERVAL = 2.0

JwtPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
JwtPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class KeyringError(Exception):
    """The keyring is missing, unreadable, unsafe or inconsistent."""


def generate_private_key(alg: str) -> JwtPrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise KeyringError(f"unsupported JWT algorithm {alg!r}")


def _key_for(alg: str, key: PrivateKeyTypes) -> JwtPrivateKey | None:
    """``key`` if it is a key of ``alg`` (right type, curve and size), else None."""
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key if key.curve.name == "secp256r1" else None
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return key if key.key_size >= 2048 else None
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    return None


def _pem(key: JwtPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private_key: JwtPrivateKey
    public_key: JwtPublicKey
    created_at: int
    retired_at: int | None

    def verifies_until(self, access_ttl: int, leeway: int) -> float:
        if self.retired_at is None:
            return float("inf")
        return self.retired_at + access_ttl + leeway

    def public_jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = algo.to_jwk(self.public_key, as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def _entry(key: SigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "alg": key.alg,
        "private_key": _pem(key.private_key),
        "created_at": key.created_at,
        "retired_at": key.retired_at,
    }


def _parse(text: str, source: Path) -> list[SigningKey]:
    try:
        doc = json.loads(text)
        if doc.get("version") != 1 or not isinstance(doc.get("keys"), list):
            raise ValueError("not a version 1 keyring")
        keys = []
        for item in doc["keys"]:
            loaded = serialization.load_pem_private_key(
                item["private_key"].encode("ascii"), password=None
            )
            alg = str(item["alg"])
            private = _key_for(alg, loaded)
            if private is None:
                raise ValueError(f"key {item['kid']} does not match its algorithm {alg}")
            retired = item.get("retired_at")
            keys.append(
                SigningKey(
                    kid=str(item["kid"]),
                    alg=alg,
                    private_key=private,
                    public_key=private.public_key(),
                    created_at=int(item["created_at"]),
                    retired_at=None if retired is None else int(retired),
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # The message names the file and the problem, never the key material.
        raise KeyringError(f"{source}: invalid keyring ({type(exc).__name__})") from None
    return keys


def _serialise(keys: list[SigningKey]) -> bytes:
    return json.dumps({"version": 1, "keys": [_entry(k) for k in keys]}, indent=1).encode()


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> bool:
    """Write ``data`` to ``path`` with mode 0600, atomically.

    ``exclusive``: only if ``path`` does not exist yet (False when another process
    won the race, which is fine: the caller then loads that keyring).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def require_private_mode(path: Path) -> None:
    """Refuse a secret file that group or other users can read (a key generated in
    the data dir, not a mounted one: mounts set their own modes)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyringError(
            f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def new_key(alg: str, now: int | None = None) -> SigningKey:
    private = generate_private_key(alg)
    return SigningKey(
        kid=secrets.token_hex(8),
        alg=alg,
        private_key=private,
        public_key=private.public_key(),
        created_at=int(time.time()) if now is None else now,
        retired_at=None,
    )


def read_keyring(path: Path, *, check_mode: bool) -> list[SigningKey]:
    try:
        if check_mode:
            require_private_mode(path)
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise KeyringError(f"{path}: keyring file not found") from None
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read keyring ({exc.strerror})") from None
    return _parse(text, path)


def ensure_keyring(path: Path, alg: str) -> list[SigningKey]:
    """Load the data-dir keyring, creating it (one key of ``alg``) on first start."""
    if not path.exists():
        _write_private(path, _serialise([new_key(alg)]), exclusive=True)
    return read_keyring(path, check_mode=True)


def rotate(
    path: Path, alg: str, *, access_ttl: int, leeway: int, retire_now: bool = False
) -> tuple[SigningKey, list[str]]:
    """Add a new signing key; retire the current one; drop keys no token can need.

    ``retire_now`` (a suspected key compromise) drops every older key at once:
    every token they signed stops verifying. Returns the new key and dropped kids.
    """
    with _locked(path):
        keys = read_keyring(path, check_mode=True) if path.exists() else []
        now = int(time.time())
        kept: list[SigningKey] = []
        dropped: list[str] = []
        for key in keys:
            retired = key if key.retired_at is not None else _retired(key, now)
            if retire_now or retired.verifies_until(access_ttl, leeway) <= now:
                dropped.append(key.kid)
            else:
                kept.append(retired)
        fresh = new_key(alg, now)
        _write_private(path, _serialise([*kept, fresh]), exclusive=False)
    return fresh, dropped


def _retired(key: SigningKey, now: int) -> SigningKey:
    return SigningKey(
        kid=key.kid,
        alg=key.alg,
        private_key=key.private_key,
        public_key=key.public_key,
        created_at=key.created_at,
        retired_at=now,
    )


class KeyStore:
    """The keys one process signs and verifies with, re-read when the file changes."""

    def __init__(
        self, path: Path, *, alg: str, access_ttl: int, leeway: int, mounted: bool
    ) -> None:
        self.path = path
        self.alg = alg
        self.access_ttl = access_ttl
        self.leeway = leeway
        self.mounted = mounted
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._keys: dict[str, SigningKey] = {}
        self._signing: SigningKey | None = None
        self.generation = 0
        self.reload(force=True)

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_ino)

    def reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        try:
            stamp = self._stat()
        except FileNotFoundError:
            if force:
                raise KeyringError(f"{self.path}: keyring file not found") from None
            return  # keep serving with the keys we have
        if stamp == self._stamp:
            return
        keys = read_keyring(self.path, check_mode=not self.mounted)
        usable = [k for k in keys if k.alg == self.alg]
        signing = [k for k in usable if k.retired_at is None]
        if not signing:
            raise KeyringError(
                f"{self.path}: no active {self.alg} key; run `firewatch keys rotate`"
            )
        self._keys = {k.kid: k for k in usable}
        self._signing = max(signing, key=lambda k: (k.created_at, k.kid))
        self._stamp = stamp
        self.generation += 1

    @property
    def signing_key(self) -> SigningKey:
        self.reload()
        assert self._signing is not None
        return self._signing

    def verification_key(self, kid: str) -> SigningKey | None:
        """The key for ``kid`` if it may still verify; exact lookup, never a path."""
        self.reload()
        key = self._keys.get(kid)
        if key is None or key.verifies_until(self.access_ttl, self.leeway) <= time.time():
            return None
        return key

    def jwks(self) -> dict[str, Any]:
        self.reload()
        now = time.time()
        return {
            "keys": [
                k.public_jwk()
                for k in sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)
                if k.verifies_until(self.access_ttl, self.leeway) > now
            ]
        }
