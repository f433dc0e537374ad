"""The served OpenAPI description, fuzzed: schemathesis against the real app.

Every operation of /openapi.json gets its documented examples, schemathesis's
coverage cases (boundaries, missing and wrong-typed fields, unexpected methods and
content types) and a bounded number of generated requests, sent in process to an app
on a PostgreSQL database and a Redis database of this module's own, as the admin (the
ingestion routes with an integration key). Every answer must be no 5xx, documented
(status code, content type, body schema, headers), and every 4xx/5xx an RFC 9457
problem whose ``status`` is the HTTP status.

Derandomized: the same requests on every run, so a failure here is reproducible and
new examples come only from a changed description. ``GET /api/v1/events`` (a stream
that does not end) and ``POST /api/v1/auth/logout`` (it would revoke the token that
drives the run) are left out; the admin's own account is never the target of the
user routes (a role change, disable or password reset would revoke it too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.generation import derive_operation_seed
from schemathesis.generation.case import Case
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from firewatch.app import create_app
from firewatch.auth import cli as auth_cli
from firewatch.auth import service as auth_service
from firewatch.auth.principal import SYSTEM
from firewatch.runtime.database import create_pool
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings
from tests import servers
from tests.conftest import TEST_SECURITY

ADMIN = "fuzz-admin"
ADMIN_PASSWORD = "Fuzz-harness-admin-pw-7431"
# Operations an integration key drives (the admin may ingest too; the key's path is
# the one production traffic takes).
INGEST = {"/api/v1/integrations/alertmanager", "/api/v1/signals"}
EXCLUDED = ("/api/v1/events", "/api/v1/auth/logout")
PROBLEM_FIELDS = ("type", "title", "status", "detail")
# Generated requests per operation, on top of the examples and coverage cases: ~2,700
# requests in all, ~20 s on a 2-core machine (15 is ~30 s for ~300 more requests).
MAX_EXAMPLES = 10
# Answers other than 401 the run must have had (a locked-out run has none): handlers
# were reached, not only the authentication in front of them.
MIN_REACHED = 1500


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    reached: Counter[str] = field(default_factory=Counter)  # non-401 answers per operation


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is application/problem+json with type/title/status/detail, and
    ``status`` is the HTTP status."""
    status = response.status_code
    if status < 400:
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    assert ctype.startswith("application/problem+json"), (
        f"{status} with content-type {ctype!r}: {response.text[:300]!r}"
    )
    body = response.json()
    missing = [f for f in PROBLEM_FIELDS if f not in body]
    assert not missing, f"{status} problem lacks {missing}: {response.text[:300]!r}"
    assert body["status"] == status, f"problem status {body['status']!r} in a {status}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_json,
]


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
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    fuzz_settings = Settings(
        database_url=SecretStr(fresh_database),
        redis_url=SecretStr(redis_db),
        data_dir=data_dir,
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


@dataclass(frozen=True)
class Target:
    schema: schemathesis.BaseSchema
    headers: dict[str, str]  # the admin's bearer token
    ingest_headers: dict[str, str]  # the integration key, for INGEST


@pytest.fixture(scope="module")
def target(credentials: Credentials) -> Iterator[Target]:
    """The app, started by schemathesis (its lifespan runs on schemathesis's own event
    loop thread), and its description; stopped after the module."""
    app = create_app(credentials.settings)
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20261127,
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 30,
        }
    )
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        login = schema["/api/v1/auth/login"]["POST"].Case(
            body={"username": ADMIN, "password": ADMIN_PASSWORD},
            media_type="application/json",
        )
        response = login.call()
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        yield Target(
            schema=schema.exclude(path=list(EXCLUDED)),
            headers={"Authorization": f"Bearer {token}"},
            ingest_headers={"Authorization": f"Bearer {credentials.integration_key}"},
        )
    finally:
        asgi.shutdown_lifespans()


def _spare_the_admin(case: Case[Any]) -> None:
    """A generated username that is the admin's (usernames are looked up lower-cased
    and trimmed) becomes someone else's: the run's own token must stay valid."""
    params = case.path_parameters
    if params and str(params.get("username", "")).strip().lower() == ADMIN:
        params["username"] = "someone-else"


# Examples, then coverage cases, then MAX_EXAMPLES generated ones (positive and
# negative), as `schemathesis run` does; no shrinking: the first failing request of an
# operation is reported as it was sent (the app keeps state, so a shrunk replay would
# not be the same request to the same app).
MODES = [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]
HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=MAX_EXAMPLES,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _fuzz(target: Target, operation: APIOperation[Any, Any, Any, Any], tally: Tally) -> str | None:
    """Run one operation's cases; the first failure's report, or None."""

    def one_case(case: Case[Any]) -> None:
        _spare_the_admin(case)
        headers = target.ingest_headers if operation.path in INGEST else target.headers
        response = case.call(headers=headers)
        tally.statuses[response.status_code] += 1
        if response.status_code != 401:
            tally.reached[operation.label] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    project = target.schema.config
    test = create_test(
        operation=operation,
        test_func=one_case,
        config=HypothesisTestConfig(
            project=project,
            modes=MODES,
            settings=project.get_hypothesis_settings(operation=operation, phase="fuzzing"),
            explicit_settings=HYPOTHESIS,
            seed=derive_operation_seed(project.seed, operation.label),
        ),
    )
    try:
        test()
    except FailureGroup as failed:  # the checks that failed, with a curl to reproduce
        return f"{operation.label}: {failed.message}"
    except Exception as exc:  # an error sending or generating
        return f"{operation.label}: {type(exc).__name__}: {exc}"
    return None


def test_every_answer_is_documented_and_no_error_is_a_500(target: Target) -> None:
    tally = Tally()
    operations: list[str] = []
    failures: list[str] = []
    for result in target.schema.get_all_operations():
        if isinstance(result, Err):  # a definition schemathesis cannot generate from
            failures.append(f"{result.err()}")
            continue
        operation = result.ok()
        operations.append(operation.label)
        failure = _fuzz(target, operation, tally)
        if failure is not None:
            failures.append(failure)
    assert len(operations) >= 45, operations
    assert not failures, "\n\n".join(failures)
    # not a run locked out at the door: the handlers answered
    reached = sum(tally.reached.values())
    assert reached >= MIN_REACHED, (reached, tally.statuses)
    # every operation but the signed webhook (HMAC, not a bearer) got past authentication
    unreached = set(operations) - set(tally.reached)
    assert unreached <= {"POST /api/v1/integrations/webhook/{integration}"}, unreached
