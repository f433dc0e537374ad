"""Access tokens: asymmetric JWTs, one algorithm pinned at verification.

A token carries iss, aud, sub (the username), role, sid (the login's refresh
family), ver (the user's token version), iat, nbf, exp and jti; its header names
the signing key (kid) and the type ``at+jwt`` (RFC 9068), so no other JWT can be
replayed as an access token.

Verification runs once per token and process: verified claims are cached until the
token expires (bounded, oldest evicted first). Revocation is not cached; the
denylist in Redis is checked on every request (see dependencies.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from firewatch.auth.keys import KeyStore
from firewatch.auth.principal import Role

JWT_TYP = "at+jwt"  # RFC 9068 access token type
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "nbf", "iat", "jti"]
MAX_TOKEN_LENGTH = 4096
MAX_KID_LENGTH = 64
# The longest lifetime any access token may have (the setting's maximum, and the
# ceiling of ``token issue --ttl``): revocations in Redis are held this long plus
# the leeway, so no token can outlive the record that revokes it.
MAX_ACCESS_TOKEN_TTL = 3600


class InvalidTokenError(Exception):
    """The token is not one this server issued, or no longer valid. ``str`` is safe."""


class ExpiredTokenError(InvalidTokenError):
    """The token was valid but is past its ``exp`` (counted apart in the metrics)."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    role: str
    jti: str
    sid: str | None
    version: int
    iat: int
    exp: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: AccessClaims


class TokenService:
    def __init__(
        self,
        keys: KeyStore,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int,
        cache_size: int,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        self._cache: dict[str, AccessClaims] = {}
        self._cache_size = cache_size
        self._cache_generation = keys.generation

    def issue(
        self, subject: str, role: str, *, version: int, sid: str | None, ttl: int | None = None
    ) -> IssuedToken:
        lifetime = self.ttl if ttl is None else ttl
        if not 0 < lifetime <= MAX_ACCESS_TOKEN_TTL:
            raise ValueError(f"an access token lives 1 to {MAX_ACCESS_TOKEN_TTL} seconds")
        key = self.keys.signing_key
        now = int(time.time())
        exp = now + lifetime
        jti = uuid.uuid4().hex
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": jti,
            "ver": version,
        }
        if sid is not None:
            payload["sid"] = sid
        token = jwt.encode(
            payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": JWT_TYP}
        )
        return IssuedToken(token, AccessClaims(subject, role, jti, sid, version, now, exp))

    def verify(self, token: str) -> AccessClaims:
        self.keys.reload()  # at most one stat() every 2 s: sees rotations and retirements
        if self._cache_generation != self.keys.generation:
            self._cache.clear()  # the key set changed (rotation, emergency retirement)
            self._cache_generation = self.keys.generation
        cached = self._cache.get(token)
        if cached is not None:
            if time.time() < cached.exp:
                return cached
            del self._cache[token]
        claims = self._verify(token)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("the token is malformed") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if alg != self.keys.alg:
            raise InvalidTokenError("the token's algorithm is not accepted")
        if header.get("typ") != JWT_TYP:
            raise InvalidTokenError("the token is not an access token")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
            raise InvalidTokenError("the token names no usable signing key")
        key = self.keys.verification_key(kid)
        if key is None:
            self.keys.reload(force=True)  # a sibling worker may have rotated just now
            key = self.keys.verification_key(kid)
        if key is None:
            raise InvalidTokenError("the token was signed by an unknown or retired key")
        try:
            payload = jwt.decode(
                token,
                key.public_key,
                algorithms=[self.keys.alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredTokenError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidTokenError("the token is not valid yet") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("the token is invalid") from None
        role, sub, jti, sid = (payload.get(k) for k in ("role", "sub", "jti", "sid"))
        if role not in {r.value for r in Role}:
            raise InvalidTokenError("the token carries no valid role")
        if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
            raise InvalidTokenError("the token is invalid")
        if sid is not None and not isinstance(sid, str):
            raise InvalidTokenError("the token is invalid")
        iat, exp, ver = payload["iat"], payload["exp"], payload.get("ver")
        if not (type(iat) is int and type(exp) is int and type(ver) is int):
            raise InvalidTokenError("the token is invalid")
        return AccessClaims(sub, str(role), jti, sid, ver, iat, exp)
