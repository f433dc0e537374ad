"""A running firewatch exports real traces over OTLP/gRPC and logs without secrets.

One ``firewatch serve`` (JSON logs at debug level) exports to a real gRPC TraceService
receiver started by the test; the tests then read what the receiver got and the
server's own log file.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import servers
from tests.alerts.conftest import load_fixture
from tests.notifications.receiver import receiver as http_receiver
from tests.observability.otlp import OtlpReceiver, ReceivedSpan

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
CLIENT_KIND = 3


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def server(
    receiver: OtlpReceiver,
    fresh_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[servers.LiveServer]:
    tmp = tmp_path_factory.mktemp("traced")
    env = {
        "FIREWATCH_DATABASE_URL": fresh_database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp / "data"),
        "FIREWATCH_LOG_FORMAT": "json",
        "FIREWATCH_LOG_LEVEL": "debug",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "firewatch-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        # the notification worker runs in serve: delivery spans come from this process
        "FIREWATCH_WORKER_IN_SERVE": "true",
        "FIREWATCH_NOTIFY_POLL_INTERVAL": "0.2",
    }
    with servers.live_server(env, tmp / "serve.log", ready_timeout=240) as live:
        yield live


def log_lines(server: servers.LiveServer) -> list[dict[str, Any]]:
    lines = []
    for raw in server.log().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_request_span_has_sql_and_redis_children_and_matches_the_log(
    server: servers.LiveServer, receiver: OtlpReceiver
) -> None:
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    r = httpx.get(
        f"{server.base_url}/readyz",
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        timeout=10,
    )
    assert r.status_code == 200

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return (
            any(s.kind == SERVER_KIND for s in mine)
            and any(s.attributes.get("db.system") == "postgresql" for s in mine)
            and any(s.attributes.get("db.system") == "redis" for s in mine)
        )

    spans = [s for s in receiver.wait_for(complete) if s.trace_id == trace_id]
    (root,) = [s for s in spans if s.kind == SERVER_KIND]
    assert root.service_name == "firewatch-under-test"
    assert root.parent_span_id == caller_span  # the incoming traceparent is continued
    assert root.name == "GET /readyz"
    assert root.attributes.get("http.route") == "/readyz"
    sql = [s for s in spans if s.attributes.get("db.system") == "postgresql"]
    redis = [s for s in spans if s.attributes.get("db.system") == "redis"]
    assert any("SELECT 1" in str(s.attributes.get("db.statement", "")) for s in sql)
    assert any(s.name == "PING" for s in redis)
    for child in [*sql, *redis]:
        assert child.kind == CLIENT_KIND
        assert child.parent_span_id == root.span_id

    (line,) = [
        ln
        for ln in log_lines(server)
        if ln.get("event") == "request" and ln.get("trace_id") == trace_id
    ]
    assert line["route"] == "/readyz"
    assert line["status"] == 200
    assert line["span_id"] == root.span_id
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert r.headers["x-request-id"] == line["request_id"]
    assert re.fullmatch(r"c_[0-9a-f]{16}", line["client"])  # pseudonym, not 127.0.0.1


def test_an_unsampled_request_keeps_its_trace_id_and_exports_nothing(
    server: servers.LiveServer, receiver: OtlpReceiver
) -> None:
    """The caller decided not to sample (flags 00): parent-based sampling follows it, the
    SQL and Redis statements run without client spans, and the log line still carries
    the caller's trace id."""
    trace_id = secrets.token_hex(16)
    r = httpx.get(
        f"{server.base_url}/readyz",
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-00"},
        timeout=10,
    )
    assert r.status_code == 200
    # a sampled request after it: once its spans arrive, the unsampled one's would have
    sampled = secrets.token_hex(16)
    httpx.get(
        f"{server.base_url}/readyz",
        headers={"traceparent": f"00-{sampled}-{secrets.token_hex(8)}-01"},
        timeout=10,
    )
    spans = receiver.wait_for(
        lambda got: any(s.trace_id == sampled and s.kind == SERVER_KIND for s in got)
    )
    assert [s for s in spans if s.trace_id == trace_id] == []
    lines = [ln for ln in log_lines(server) if ln.get("event") == "request" and ln.get("trace_id")]
    assert any(ln["trace_id"] == trace_id and ln["route"] == "/readyz" for ln in lines)


def test_secrets_in_a_request_reach_no_log_line_and_no_span(
    server: servers.LiveServer, receiver: OtlpReceiver
) -> None:
    wrong_password = "Pw-" + secrets.token_hex(12)
    fake_bearer = "tok" + secrets.token_hex(16)
    api_key = "fw_" + secrets.token_hex(16)
    db_password = "dbpw" + secrets.token_hex(8)
    url_with_credentials = f"postgresql://admin:{db_password}@db.internal:5432/prod"
    trace_id = secrets.token_hex(16)
    traced = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    base = server.base_url
    with httpx.Client(base_url=base, headers=traced, timeout=30) as c:
        # logins carrying a password: a wrong one (401) and the admin's (200)
        assert (
            c.post(
                "/api/v1/auth/login", json={"username": "admin", "password": wrong_password}
            ).status_code
            == 401
        )
        login = c.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": servers.LIVE_ADMIN_PASSWORD},
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        # a bearer token that is not valid, an API key header, a cookie
        c.get(
            "/api/v1/incidents",
            headers={
                "Authorization": f"Bearer {fake_bearer}",
                "X-API-Key": api_key,
                "Cookie": f"session={fake_bearer}",
            },
        )
        # secrets in the query string and in a path that matches no route
        auth = {"Authorization": f"Bearer {token}"}
        c.get(f"/api/v1/incidents?api_key={api_key}&password={wrong_password}", headers=auth)
        c.get(f"/nowhere/{api_key}?dsn={url_with_credentials}", headers=auth)
        # an accepted request whose body holds a URL with credentials
        created = c.post(
            f"/api/v1/incidents?api_key={api_key}",
            headers=auth,
            json={
                "title": "warehouse load failing",
                "severity": "sev2",
                "category": "pipeline_failure",
                "description": f"job uses {url_with_credentials} password={wrong_password}",
            },
        )
        assert created.status_code == 201
        c.get("/readyz")
    # every request's server span (7), so the check below sees all of them
    receiver.wait_for(
        lambda spans: sum(s.trace_id == trace_id and s.kind == SERVER_KIND for s in spans) >= 7
    )

    log = server.log()
    assert "request" in log
    assert trace_id in log  # the requests were logged...
    secret_values = (
        wrong_password,
        servers.LIVE_ADMIN_PASSWORD,
        token,
        fake_bearer,
        api_key,
        db_password,
    )
    for secret in secret_values:
        assert secret not in log  # ...without any of the secrets
    for span in receiver.spans:
        exported = json.dumps(span.attributes)
        for secret in secret_values:
            assert secret not in exported, span


def test_uvicorn_logs_go_through_the_same_pipeline(server: servers.LiveServer) -> None:
    lines = log_lines(server)
    started = [ln for ln in lines if "Application startup complete" in str(ln.get("event"))]
    assert started, server.log()
    assert started[0]["logger"] == "uvicorn.error"
    assert started[0]["level"] == "info"
    assert "timestamp" in started[0]
    # uvicorn's own access line (raw client address) is off; firewatch.access replaces it
    assert not [ln for ln in lines if ln.get("logger") == "uvicorn.access"]
    requests = [ln for ln in lines if ln.get("event") == "request"]
    assert requests
    assert all(re.fullmatch(r"c_[0-9a-f]{16}", ln["client"]) for ln in requests)


def test_alert_ingest_and_its_notification_form_one_trace(
    server: servers.LiveServer, receiver: OtlpReceiver
) -> None:
    """Alertmanager POST -> server span > ingest > grouping; the notification queued
    by that transaction is delivered later by the worker in a CLIENT span of the
    same trace, and the receiver gets that span as its traceparent."""
    admin = servers.bearer(server.base_url)
    tag = secrets.token_hex(4)
    with httpx.Client(base_url=server.base_url, timeout=30) as c, http_receiver() as hook:
        key = c.post(
            "/api/v1/integrations/keys",
            headers=admin,
            json={"name": f"am-{tag}", "scopes": ["alerts:write"]},
        )
        assert key.status_code == 201, key.text
        dest = c.post(
            "/api/v1/notifications/destinations",
            headers=admin,
            json={
                "name": f"traced-{tag}",
                "kind": "webhook",
                "url": hook.url,
                "services": [f"svc-{tag}"],
            },
        )
        assert dest.status_code == 201, dest.text
        payload = load_fixture("firing-single.json")
        payload["groupKey"] = f'{{}}:{{alertname="Traced", tag="{tag}"}}'
        payload["commonLabels"]["service"] = f"svc-{tag}"
        payload["alerts"][0]["labels"]["service"] = f"svc-{tag}"
        trace_id = secrets.token_hex(16)
        r = c.post(
            "/api/v1/integrations/alertmanager",
            json=payload,
            headers={
                "Authorization": f"Bearer {key.json()['key']}",
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["created"] is True
        assert hook.got_delivery.wait(30), "the worker never delivered the notification"
    (delivered,) = hook.delivered
    assert delivered.json()["event"] == "incident.opened"
    version, got_trace, got_parent, flags = delivered.headers["traceparent"].split("-")
    assert (version, got_trace, flags) == ("00", trace_id, "01")

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans if s.trace_id == trace_id}
        return {"firewatch.ingest", "firewatch.grouping"} <= names and any(
            s.span_id == got_parent for s in spans
        )

    spans = [s for s in receiver.wait_for(complete) if s.trace_id == trace_id]
    (root,) = [s for s in spans if s.kind == SERVER_KIND]
    assert root.attributes.get("http.route") == "/api/v1/integrations/alertmanager"
    (ingest,) = [s for s in spans if s.name == "firewatch.ingest"]
    (grouping,) = [s for s in spans if s.name == "firewatch.grouping"]
    assert ingest.parent_span_id == root.span_id
    assert ingest.attributes == {
        "firewatch.alert.source": "alertmanager",
        "firewatch.alert.count": 1,
    }
    assert grouping.parent_span_id == ingest.span_id
    assert grouping.attributes["firewatch.group.key"] == payload["groupKey"]
    # the SQL of the transaction hangs under the ingest and grouping spans
    assert any(
        s.attributes.get("db.system") == "postgresql" and s.parent_span_id == grouping.span_id
        for s in spans
    )
    # the delivery: a CLIENT span of the ingest trace, child of the span that queued it
    (delivery,) = [s for s in spans if s.span_id == got_parent]
    assert delivery.kind == CLIENT_KIND
    assert delivery.name == "POST"
    assert delivery.parent_span_id == grouping.span_id
    assert delivery.attributes["firewatch.notification.channel"] == "webhook"
    assert delivery.attributes["http.response.status_code"] == 200
    assert delivery.attributes["url.full"] == hook.url.removesuffix("/hook")  # no path
    # the worker's polling for due notifications (every 0.2 s here) exports nothing
    polls = [
        s
        for s in receiver.spans
        if "SKIP LOCKED" in str(s.attributes.get("db.statement", ""))
        or "notification_attempts" in str(s.attributes.get("db.statement", ""))
    ]
    assert polls == []


def test_exporter_failure_never_breaks_requests(
    server: servers.LiveServer, receiver: OtlpReceiver
) -> None:
    receiver.stop()  # the collector goes away; spans can no longer be delivered
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        codes = [c.get("/readyz").status_code for _ in range(30)]
        codes.append(
            c.get("/api/v1/incidents", headers=servers.bearer(server.base_url)).status_code
        )
    assert codes == [200] * 31
    assert server.process.poll() is None
