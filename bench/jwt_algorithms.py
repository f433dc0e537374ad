"""Sign/verify cost of the JWT algorithms firewatch may use (figures for ADR-002).

Run: ``.venv/bin/python -m bench.jwt_algorithms [--rounds N]``

Each algorithm signs a token carrying firewatch's real claim set with PyJWT and
verifies it the way firewatch does (algorithm pinned, iss/aud/exp/nbf checked).
Prints the median of several timed batches in microseconds per operation, plus
the token size, because a bearer token travels with every request.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS: dict[str, Callable[[], Any]] = {
    "RS256 (RSA-2048)": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256 (P-256)": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA (Ed25519)": lambda: ed25519.Ed25519PrivateKey.generate(),
}
JWT_ALG = {"RS256 (RSA-2048)": "RS256", "ES256 (P-256)": "ES256", "EdDSA (Ed25519)": "EdDSA"}


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "firewatch",
        "aud": "firewatch-api",
        "sub": "alice",
        "role": "responder",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }


def _per_op(fn: Callable[[], object], rounds: int, batches: int = 5) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - start) / rounds)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'algorithm':<18} {'sign µs':>9} {'verify µs':>10} {'token bytes':>12}")
    for name, make in ALGORITHMS.items():
        key = make()
        public = key.public_key()
        alg = JWT_ALG[name]
        claims = _claims()
        headers = {"kid": "k1"}
        token = jwt.encode(claims, key, algorithm=alg, headers=headers)

        def sign(key: Any = key, alg: str = alg, claims: dict[str, Any] = claims) -> str:
            return jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})

        def verify(public: Any = public, alg: str = alg, token: str = token) -> object:
            return jwt.decode(
                token, public, algorithms=[alg], audience="firewatch-api", issuer="firewatch"
            )

        sign_us = _per_op(sign, max(args.rounds // 10, 50) if alg == "RS256" else args.rounds)
        verify_us = _per_op(verify, args.rounds)
        print(f"{name:<18} {sign_us:>9.1f} {verify_us:>10.1f} {len(token):>12}")


if __name__ == "__main__":
    main()
