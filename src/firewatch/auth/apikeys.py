"""Integration API keys ``fw_<key_id>_<secret>``: format, parsing, hashing (pure).

The key id is public (it names the key in lists and logs); the secret is 256
random bits, stored only as SHA-256: with that much entropy a fast hash is as
safe as a slow one, and checking a key costs microseconds, not an argon2 run.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

PREFIX = "fw_"
_KEY_RE = re.compile(r"^fw_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_key() -> tuple[str, str, bytes]:
    """(key_id, full key to show once, secret hash to store)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse(key: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    match = _KEY_RE.match(key)
    if match is None:
        return None
    return match.group(1), match.group(2)


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)
