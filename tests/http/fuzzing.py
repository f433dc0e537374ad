"""schemathesis, driven one operation at a time (for tests/http/test_fuzz_openapi.py).

Imported only by that test, inside :func:`hypothesis_restored`: importing schemathesis
patches Hypothesis process-wide (among others, it blanks the falsifying example that
every other Hypothesis test prints when it fails), and the patches are undone after.
Its pytest plugin is off (``-p no:schemathesis`` in pyproject.toml) for the same
reason, and because its lazy-schema loader reads a pytest internal that pytest 9.2
no longer has (``Node._nodeid``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, settings
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

PROBLEM_FIELDS = ("type", "title", "status", "detail")


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is application/problem+json with type/title/status/detail,
    ``status`` is the HTTP status, and a 422 has ``errors``, each with a ``field``."""
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
    if status == 422:  # names what it refuses (README, Errors)
        errors = body.get("errors")
        assert isinstance(errors, list), f"422 without errors: {response.text[:300]!r}"
        assert errors, f"422 with empty errors: {response.text[:300]!r}"
        assert all(isinstance(e, dict) and isinstance(e.get("field"), str) for e in errors), (
            f"422 errors without a field: {response.text[:300]!r}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_json,
]

# Examples, then coverage cases, then ``max_examples`` generated ones (positive and
# negative), as `schemathesis run` does; no shrinking: the first failing request of an
# operation is reported as it was sent (the app keeps state, so a shrunk replay would
# not be the same request to the same app).
MODES = [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]


@dataclass(frozen=True)
class Plan:
    """What to send, and as whom."""

    seed: int
    max_examples: int
    exclude_paths: tuple[str, ...]
    headers: dict[str, str]  # the admin's bearer token
    ingest_paths: frozenset[str]
    ingest_headers: dict[str, str]  # the integration key, for ingest_paths
    spare_username: str  # never the target of a user route


@dataclass
class Report:
    operations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    reached: Counter[str] = field(default_factory=Counter)  # non-401 answers per operation


def load(app: Any, *, seed: int, max_examples: int) -> schemathesis.BaseSchema:
    """The app's /openapi.json; the first request starts the app's lifespan on
    schemathesis's event loop thread (stopped by :func:`stop`)."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": seed,
            "generation": {"deterministic": True, "max-examples": max_examples},
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def login(schema: schemathesis.BaseSchema, username: str, password: str) -> str:
    case = schema["/api/v1/auth/login"]["POST"].Case(
        body={"username": username, "password": password}, media_type="application/json"
    )
    response = case.call()
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def stop() -> None:
    asgi.shutdown_lifespans()


def run(schema: schemathesis.BaseSchema, plan: Plan) -> Report:
    report = Report()
    hypothesis_settings = settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=plan.max_examples,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    for result in schema.exclude(path=list(plan.exclude_paths)).get_all_operations():
        if isinstance(result, Err):  # a definition schemathesis cannot generate from
            report.failures.append(f"{result.err()}")
            continue
        operation = result.ok()
        report.operations.append(operation.label)
        failure = _fuzz(operation, plan, hypothesis_settings, report)
        if failure is not None:
            report.failures.append(failure)
    return report


def _fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    plan: Plan,
    hypothesis_settings: settings,
    report: Report,
) -> str | None:
    """Run one operation's cases; the first failure's report, or None."""
    headers = plan.ingest_headers if operation.path in plan.ingest_paths else plan.headers

    def one_case(case: Case[Any]) -> None:
        params = case.path_parameters
        # usernames are looked up lower-cased and trimmed
        if params and str(params.get("username", "")).strip().lower() == plan.spare_username:
            params["username"] = "someone-else"
        response = case.call(headers=headers)
        report.statuses[response.status_code] += 1
        if response.status_code != 401:
            report.reached[operation.label] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    project = operation.schema.config
    test = create_test(
        operation=operation,
        test_func=one_case,
        config=HypothesisTestConfig(
            project=project,
            modes=MODES,
            settings=project.get_hypothesis_settings(operation=operation, phase="fuzzing"),
            explicit_settings=hypothesis_settings,
            seed=derive_operation_seed(plan.seed, operation.label),
        ),
    )
    try:
        test()
    except FailureGroup as failed:  # the checks that failed, with a curl to reproduce
        return f"{operation.label}: {failed.message}"
    except Exception as exc:  # an error sending or generating (in process, a 500 raises)
        return f"{operation.label}: {type(exc).__name__}: {exc}"
    return None
