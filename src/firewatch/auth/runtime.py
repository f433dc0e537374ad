"""The per-process security state the lifespan builds and puts on ``app.state.auth``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from firewatch.audit.service import Pseudonymiser, load_hmac_key, secrets_dir
from firewatch.auth.keys import KEYRING_NAME, KeyStore, ensure_keyring
from firewatch.auth.passwords import Hasher
from firewatch.auth.revocation import Revocations
from firewatch.auth.throttle import LoginThrottle
from firewatch.auth.tokens import TokenService
from firewatch.settings import Settings


def keyring_path(settings: Settings) -> Path:
    if settings.jwt_keys_file is not None:
        return settings.jwt_keys_file
    return secrets_dir(settings) / KEYRING_NAME


def open_keystore(settings: Settings) -> KeyStore:
    """The keyring from the mounted file, else the data dir (created on first start)."""
    path = keyring_path(settings)
    mounted = settings.jwt_keys_file is not None
    if not mounted:
        ensure_keyring(path, settings.jwt_algorithm.value)
    return KeyStore(
        path,
        alg=settings.jwt_algorithm.value,
        access_ttl=settings.access_token_ttl,
        leeway=settings.token_leeway,
        mounted=mounted,
    )


def make_hasher(settings: Settings) -> Hasher:
    return Hasher(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
        concurrency=settings.password_hash_concurrency,
    )


def make_tokens(settings: Settings, keys: KeyStore) -> TokenService:
    return TokenService(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl,
        leeway=settings.token_leeway,
        cache_size=settings.claims_cache_size,
    )


@dataclass
class AuthState:
    settings: Settings
    tokens: TokenService
    hasher: Hasher
    revocations: Revocations
    throttle: LoginThrottle
    pseudonymise: Pseudonymiser

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> AuthState:
        return cls(
            settings=settings,
            tokens=make_tokens(settings, open_keystore(settings)),
            hasher=make_hasher(settings),
            revocations=Revocations(
                redis, access_ttl=settings.access_token_ttl, leeway=settings.token_leeway
            ),
            throttle=LoginThrottle(
                redis,
                per_account=settings.rate_limit_login_account,
                per_client=settings.rate_limit_login_client,
                threshold=settings.lockout_threshold,
                base_seconds=settings.lockout_base_seconds,
                max_seconds=settings.lockout_max_seconds,
            ),
            pseudonymise=Pseudonymiser(load_hmac_key(settings)),
        )
