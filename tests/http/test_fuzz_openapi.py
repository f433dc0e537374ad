"""The served OpenAPI description, fuzzed: schemathesis against the real app.

Every operation of /openapi.json gets its documented examples, schemathesis's
coverage cases (boundaries, missing and wrong-typed fields, unexpected methods and
content types) and a bounded number of generated requests, sent in process to an app
on a PostgreSQL database and a Redis database of this module's own, as the admin (the
ingestion routes with an integration key). Every answer must be no 5xx, documented
(status code, content type, body schema, headers), every 4xx/5xx an RFC 9457
problem whose ``status`` is the HTTP status, and every 422 one that names its fields.

Derandomized: the same ~2,700 requests on every run, so a failure here is
reproducible and new cases come only from a changed description. ``GET
/api/v1/events`` (a stream that does not end) and ``POST /api/v1/auth/logout`` (it
would revoke the token that drives the run) are left out; the admin's own account is
never the target of the user routes (a role change, disable or password reset would
revoke it too).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from firewatch.app import create_app
from firewatch.auth import cli as auth_cli
from firewatch.auth import service as auth_service
from firewatch.auth.principal import SYSTEM
from firewatch.runtime.database import create_pool
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings
from tests import servers
from tests.conftest import TEST_SECURITY

if TYPE_CHECKING:
    from tests.http.fuzzing import Report

ADMIN = "fuzz-admin"
ADMIN_PASSWORD = "Fuzz-harness-admin-pw-7431"
SEED = 20261127
# Generated requests per operation, on top of the examples and coverage cases: ~2,700
# requests in all, ~20 s on a 2-core machine (15 is ~30 s for ~300 more requests).
MAX_EXAMPLES = 10
# Answers other than 401 the run must have had (a locked-out run has none): handlers
# were reached, not only the authentication in front of them.
MIN_REACHED = 2000
WEBHOOK = "POST /api/v1/integrations/webhook/{integration}"  # HMAC-signed, not a bearer

# What importing schemathesis replaces in Hypothesis (schemathesis.generation.hypothesis
# .setup), for every test in the process: put back after this module.
_PATCHED_BY_SCHEMATHESIS = (
    ("hypothesis.core", "RepresentationPrinter"),
    ("hypothesis.core", "BUFFER_SIZE"),
    ("hypothesis.internal.conjecture.engine", "BUFFER_SIZE"),
    ("hypothesis.strategies._internal.collections", "BUFFER_SIZE"),
    ("hypothesis.strategies._internal.core", "is_first_param_referenced_in_function"),
    ("hypothesis.internal.entropy", "register_random"),
)
_ABSENT = object()


@contextmanager
def hypothesis_restored() -> Iterator[None]:
    saved = [
        (module, name, getattr(module, name, _ABSENT))
        for module, name in (
            (importlib.import_module(m), name) for m, name in _PATCHED_BY_SCHEMATHESIS
        )
    ]
    try:
        yield
    finally:
        for module, name, value in saved:
            if value is _ABSENT:
                if hasattr(module, name):
                    delattr(module, name)
            else:
                setattr(module, name, value)


@dataclass(frozen=True)
class Credentials:
    settings: Settings
    integration_key: str


@pytest.fixture(scope="module")
async def credentials(
    fresh_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Credentials]:
    """Settings for the fuzzed app: this module's database, a Redis database no other
    test uses (9 + worker), the bootstrap admin and an integration key."""
    redis_db = servers.with_redis_db(redis_url, 9 + servers.worker_index() % 7)
    fuzz_settings = Settings(
        database_url=SecretStr(fresh_database),
        redis_url=SecretStr(redis_db),
        data_dir=tmp_path_factory.mktemp("fuzz-data"),
        migrate_on_start=False,
        admin_username=ADMIN,
        admin_password=SecretStr(ADMIN_PASSWORD),
        **TEST_SECURITY,
    )
    redis = create_redis(redis_db)
    await redis.flushdb()
    assert await auth_cli.bootstrap(fuzz_settings) == (ADMIN, None)
    pool = await create_pool(fresh_database, min_size=1, max_size=2)
    try:
        _row, key = await auth_service.create_api_key(
            pool, SYSTEM, "fuzz-ingest", ["alerts:write", "signals:write"]
        )
    finally:
        await pool.close()
    try:
        yield Credentials(fuzz_settings, key)
    finally:
        await redis.flushdb()
        await redis.aclose()


@pytest.fixture(scope="module")
def report(credentials: Credentials) -> Report:
    """One derandomized run over every operation (the app started by schemathesis, on
    its own event loop thread, and stopped after it)."""
    with hypothesis_restored():
        from tests.http import fuzzing

        try:
            schema = fuzzing.load(
                create_app(credentials.settings), seed=SEED, max_examples=MAX_EXAMPLES
            )
            token = fuzzing.login(schema, ADMIN, ADMIN_PASSWORD)
            plan = fuzzing.Plan(
                seed=SEED,
                max_examples=MAX_EXAMPLES,
                exclude_paths=("/api/v1/events", "/api/v1/auth/logout"),
                headers={"Authorization": f"Bearer {token}"},
                ingest_paths=frozenset({"/api/v1/integrations/alertmanager", "/api/v1/signals"}),
                ingest_headers={"Authorization": f"Bearer {credentials.integration_key}"},
                spare_username=ADMIN,
            )
            return fuzzing.run(schema, plan)
        finally:
            fuzzing.stop()


def test_every_answer_is_documented_and_no_error_is_a_500(report: Report) -> None:
    assert len(report.operations) >= 45, report.operations
    assert not report.failures, "\n\n".join(report.failures)


def test_the_fuzzing_reached_the_handlers(report: Report) -> None:
    """Not a run locked out at the door: the handlers answered, on every operation."""
    reached = sum(report.reached.values())
    assert reached >= MIN_REACHED, (reached, report.statuses)
    assert set(report.operations) - set(report.reached) <= {WEBHOOK}


def test_hypothesis_is_as_schemathesis_found_it(report: Report) -> None:
    """Other tests' Hypothesis failures still print their falsifying example."""
    from hypothesis import core
    from hypothesis.vendor import pretty

    assert vars(core)["RepresentationPrinter"] is pretty.RepresentationPrinter
