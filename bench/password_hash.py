"""Cost of one argon2id hash/verify with firewatch's default parameters (RFC 9106).

Run: ``.venv/bin/python -m bench.password_hash [--rounds N]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import argon2

from firewatch.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    s = Settings()
    ph = argon2.PasswordHasher(
        time_cost=s.password_hash_time_cost,
        memory_cost=s.password_hash_memory_kib,
        parallelism=s.password_hash_parallelism,
    )
    stored = ph.hash("correct-kettle-staple-41")
    samples = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        ph.verify(stored, "correct-kettle-staple-41")
        samples.append(time.perf_counter() - start)
    print(
        f"argon2id t={s.password_hash_time_cost} m={s.password_hash_memory_kib} KiB "
        f"p={s.password_hash_parallelism}: verify median {statistics.median(samples) * 1e3:.0f} ms "
        f"(min {min(samples) * 1e3:.0f} ms, {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
