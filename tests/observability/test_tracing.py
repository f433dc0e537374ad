"""The span helpers and traceparent injection, on a real SDK tracer with an in-memory exporter."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from firewatch.observability import tracing
from tests.observability.otlp import OtlpReceiver


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The helpers' tracer, from a provider of this test (the global one stays unset)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer(tracing.TRACER_NAME))
    yield memory
    provider.shutdown()


def test_nested_helpers_form_one_trace(exporter: InMemorySpanExporter) -> None:
    with tracing.ingest_span("alertmanager", alerts=3) as ingest:
        assert tracing.current_ids() == (
            format(ingest.get_span_context().trace_id, "032x"),
            format(ingest.get_span_context().span_id, "016x"),
        )
        with tracing.grouping_span(alerts=3, group_key='{}:{alertname="X"}'):
            pass
        with tracing.scoring_span("latency", model_version="v3", points=10):
            pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["firewatch.ingest"]
    assert root.attributes is not None
    assert dict(root.attributes) == {
        "firewatch.alert.source": "alertmanager",
        "firewatch.alert.count": 3,
    }
    assert root.context is not None
    for child in ("firewatch.grouping", "firewatch.scoring"):
        parent, context = spans[child].parent, spans[child].context
        assert parent is not None
        assert context is not None
        assert parent.span_id == root.context.span_id
        assert context.trace_id == root.context.trace_id
    assert spans["firewatch.scoring"].attributes == {
        "firewatch.detection.stream": "latency",
        "firewatch.detection.points": 10,
        "firewatch.detection.model_version": "v3",
    }
    assert tracing.current_ids() is None  # nothing active once the blocks are left


def test_notification_span_is_a_client_span_that_propagates(
    exporter: InMemorySpanExporter,
) -> None:
    url = "https://hook-user:hook-pass@hooks.example.com:8443/services/T0?token=s3cr3t"
    with tracing.notification_span("webhook", url) as span:
        headers = tracing.inject_trace_headers({"content-type": "application/json"})
        tracing.set_http_status(span, 503)
    (finished,) = exporter.get_finished_spans()
    ctx = finished.context
    assert ctx is not None
    version, trace_id, parent_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert int(flags, 16) & 0x01  # sampled
    assert finished.kind is SpanKind.CLIENT
    assert finished.name == "POST"
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.attributes is not None
    assert dict(finished.attributes) == {
        "http.request.method": "POST",
        "url.full": "https://hooks.example.com:8443/services/T0",
        "server.address": "hooks.example.com",
        "server.port": 8443,
        "firewatch.notification.channel": "webhook",
        "http.response.status_code": 503,
    }


def test_an_exception_marks_the_span_failed(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tracing.span("firewatch.step", attempt=2):
        raise RuntimeError("boom")
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.attributes is not None
    assert finished.attributes["attempt"] == 2
    assert [e.name for e in finished.events] == ["exception"]


def test_without_a_span_nothing_is_injected() -> None:
    assert tracing.inject_trace_headers({}) == {}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
    ],
)
def test_tracing_is_enabled_by_the_standard_variables(env: dict[str, str], expected: bool) -> None:
    assert tracing.wanted(env) is expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
    ],
)
def test_unsupported_exporters_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_"):
        tracing.wanted(env)


def test_a_stored_traceparent_parents_a_later_span(exporter: InMemorySpanExporter) -> None:
    with tracing.grouping_span(alerts=1) as queued:
        stored = tracing.current_traceparent()
        assert stored == tracing.inject_trace_headers({})["traceparent"]  # as W3C sends it
    assert stored is not None
    ctx = queued.get_span_context()
    assert stored.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    # later, elsewhere (the worker), with nothing active
    url = "https://hooks.slack.com/services/T0/B0/secret-path"
    with tracing.notification_span("slack", url, parent=stored, with_path=False):
        headers = tracing.inject_trace_headers({})
    delivery = next(s for s in exporter.get_finished_spans() if s.name == "POST")
    assert delivery.parent is not None
    assert delivery.context is not None
    assert (delivery.parent.trace_id, delivery.parent.span_id) == (ctx.trace_id, ctx.span_id)
    sent = headers["traceparent"]
    assert sent.startswith(f"00-{ctx.trace_id:032x}-{delivery.context.span_id:016x}-")
    assert delivery.attributes is not None
    assert delivery.attributes["url.full"] == "https://hooks.slack.com"
    assert "secret-path" not in str(dict(delivery.attributes))


def test_with_tracing_off_helpers_store_and_send_nothing() -> None:
    """No SDK provider (the default): spans are no-ops, nothing to store or inject."""
    with tracing.ingest_span("alertmanager", alerts=1), tracing.grouping_span(alerts=1):
        assert tracing.current_traceparent() is None
    with tracing.notification_span("webhook", "http://127.0.0.1:9/hook", parent=None) as span:
        tracing.set_http_status(span, 200)
        tracing.set_error(span, "ConnectError")
        assert tracing.inject_trace_headers({}) == {}


@pytest.fixture
def server_exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """ServerSpan's tracer and propagation fields, as configure() sets them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in ("_server_tracer", "_sql_tracer", "_client_tracer", "propagation_fields"):
        monkeypatch.setattr(tracing, name, getattr(tracing, name))  # restored after
    tracing.install(provider)
    yield memory
    provider.shutdown()


def _scope(method: str = "GET", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "scheme": "http",
        "http_version": "1.1",
        "path": "/api/v1/incidents/INC-7",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 8000),
    }


def test_a_server_span_continues_the_caller_and_names_the_route(
    server_exporter: InMemorySpanExporter,
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    span = tracing.server_span(_scope(traceparent=f"00-{trace_id}-{parent_id}-01"))
    assert span is not None
    ids = tracing.current_ids()  # current while the request runs
    assert ids is not None
    assert ids[0] == trace_id
    span.end(route="/api/v1/incidents/{ref}", status=200, error=None)
    assert tracing.current_ids() is None  # and no longer after
    (done,) = server_exporter.get_finished_spans()
    assert done.name == "GET /api/v1/incidents/{ref}"
    assert done.kind is SpanKind.SERVER
    assert done.parent is not None
    assert format(done.parent.span_id, "016x") == parent_id
    assert done.attributes is not None
    assert done.attributes["http.route"] == "/api/v1/incidents/{ref}"
    assert done.attributes["http.response.status_code"] == 200
    assert done.attributes["url.path"] == "/api/v1/incidents/INC-7"
    assert done.attributes["server.port"] == 8000
    assert done.status.status_code is StatusCode.UNSET


def test_a_failed_request_marks_its_server_span(server_exporter: InMemorySpanExporter) -> None:
    span = tracing.server_span(_scope("BREW"))  # not an HTTP method: named "HTTP"
    assert span is not None
    span.end(route=None, status=500, error=RuntimeError("boom"))
    span = tracing.server_span(_scope("BREW"))
    assert span is not None
    span.end(route="/readyz", status=405, error=None)
    span = tracing.server_span(_scope())
    assert span is not None
    span.end(route="/readyz", status=503, error=None)
    failed, other, unavailable = server_exporter.get_finished_spans()
    assert failed.name == "HTTP"
    assert other.name == "HTTP /readyz"
    assert other.status.status_code is StatusCode.UNSET  # a 4xx is the client's error
    assert failed.attributes is not None
    assert failed.attributes["http.request.method"] == "_OTHER"
    assert failed.attributes["error.type"] == "RuntimeError"
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert unavailable.attributes is not None
    assert unavailable.attributes["error.type"] == "503"
    assert unavailable.status.status_code is StatusCode.ERROR


def test_an_unsampled_request_suppresses_client_spans(
    server_exporter: InMemorySpanExporter,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    span = tracing.server_span(_scope(traceparent=f"00-{trace_id}-00f067aa0ba902b7-00"))
    assert span is not None
    assert not is_instrumentation_enabled()  # asyncpg/redis build no span in here
    assert tracing.current_ids() is not None  # log lines still carry the caller's trace
    span.end(route="/readyz", status=200, error=None)
    assert is_instrumentation_enabled()
    assert server_exporter.get_finished_spans() == ()


def test_export_batches_are_small_unless_the_standard_variables_say_otherwise() -> None:
    assert tracing._batch_defaults({}) == {
        "max_export_batch_size": 256,
        "schedule_delay_millis": 1000,
    }
    assert tracing._batch_defaults({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"}) == {
        "schedule_delay_millis": 1000
    }
    assert (
        tracing._batch_defaults(
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512", "OTEL_BSP_SCHEDULE_DELAY": "5000"}
        )
        == {}
    )


def test_a_client_span_is_made_only_inside_a_sampled_request(
    server_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """client_span (the pipelined Redis calls, runtime/redis_mux.py) follows the rules
    of the redis instrumentation: a CLIENT child of a sampled request, nothing in an
    unsampled one, nothing with tracing off."""
    attributes: dict[str, AttributeValue] = {"db.system": "redis", "db.redis.database_index": 0}
    with tracing.client_span("EVALSHA", attributes):  # tracing off: the shared no-op
        pass
    monkeypatch.setattr(tracing, "_client_tracer", None)
    with tracing.client_span("EVALSHA", attributes):  # tracing off: the shared no-op
        pass
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(server_exporter))
    tracing.install(provider)
    with tracing.client_span("EVALSHA", attributes):  # no request span: none
        pass
    unsampled = tracing.server_span(
        _scope(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    )
    assert unsampled is not None
    with tracing.client_span("EVALSHA", attributes):
        pass
    unsampled.end(route="/api/v1/incidents/{ref}", status=200, error=None)
    assert server_exporter.get_finished_spans() == ()

    sampled = tracing.server_span(_scope())
    assert sampled is not None
    with tracing.client_span("EVALSHA", attributes):
        pass
    sampled.end(route="/api/v1/incidents/{ref}", status=200, error=None)
    client, server = server_exporter.get_finished_spans()
    assert client.name == "EVALSHA"
    assert client.kind is SpanKind.CLIENT
    assert client.attributes == attributes
    assert client.parent is not None
    assert server.context is not None
    assert client.parent.span_id == server.context.span_id
    provider.shutdown()


def test_a_new_trace_is_sampled_as_the_sdk_s_sampler_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """ServerSpan decides a request that brings no traceparent with the provider's own
    sampler, and makes a dropped span itself: whichever way it goes, the trace id is
    the one the sampler judged, kept spans come from the SDK with that decision, and
    dropped ones look as the SDK makes them (ids valid, not sampled, not recording)."""
    receiver = OtlpReceiver().start()  # a real OTLP/gRPC receiver: what is kept arrives
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    for name in ("_provider", "_server_tracer", "_sql_tracer", "_client_tracer"):
        monkeypatch.setattr(tracing, name, None)
    monkeypatch.setattr(tracing, "propagation_fields", frozenset())
    from opentelemetry import trace as trace_api
    from opentelemetry.util._once import Once

    # configure() sets the global provider, which may be set once: this test's only
    monkeypatch.setattr(trace_api, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace_api, "_TRACER_PROVIDER", None)
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    assert tracing.configure("test")
    try:
        sampler = tracing._provider.sampler
        bound = sampler._root.bound  # TraceIdRatioBased: kept below the bound
        kept = dropped = 0
        sampled_ids: list[str] = []
        for _ in range(400):
            span = tracing.server_span(_scope())
            assert span is not None
            current = trace_api.get_current_span()  # what OTel code finds in the context
            ctx = current.get_span_context()
            assert ctx.is_valid
            assert not ctx.is_remote
            sampled = (ctx.trace_id & sampler._root.TRACE_ID_LIMIT) < bound
            assert current.is_recording() is sampled
            assert isinstance(span, tracing.DroppedRequest) is not sampled  # its own span
            assert ctx.trace_flags.sampled is sampled
            assert ctx.trace_flags & TraceFlags.RANDOM_TRACE_ID
            assert is_instrumentation_enabled() is sampled  # client spans suppressed if not
            assert (tracing._recording_parent(tracing._sql_tracer) is None) is not sampled
            assert tracing.current_ids() == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
            span.end(route="/readyz", status=200, error=None)
            assert is_instrumentation_enabled()  # the request's context is gone with it
            assert trace_api.get_current_span() is trace_api.INVALID_SPAN
            kept, dropped = kept + sampled, dropped + (not sampled)
            if sampled:
                sampled_ids.append(format(ctx.trace_id, "032x"))
        assert 120 < kept < 280  # ~half: the sampler was asked once per trace id
        tracing.shutdown()  # flush
        received = receiver.wait_for(lambda spans: len(spans) >= kept)
        assert len(received) == kept
        assert {s.trace_id for s in received} == set(sampled_ids)
        assert all(s.attributes["url.path"] == "/api/v1/incidents/INC-7" for s in received)
    finally:
        RedisInstrumentor().uninstrument()
        tracing._provider.shutdown()
        receiver.stop()


def test_a_span_ended_in_another_context_does_not_raise(
    server_exporter: InMemorySpanExporter,
) -> None:
    """Ending never breaks a request: a span ended outside the context it began in
    (as OTel's detach, which logs) leaves that context's state alone and raises
    nothing."""
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

    def start() -> tracing.ServerSpan | tracing.DroppedRequest | None:
        return tracing.server_span(_scope(traceparent=unsampled))

    span = contextvars.copy_context().run(start)  # begun in a context of its own
    assert span is not None
    span.end(route="/readyz", status=200, error=None)  # ended here: no exception
    assert is_instrumentation_enabled()  # this context was never changed
    assert server_exporter.get_finished_spans() == ()


def _dropping_tracer(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Server spans from a provider that drops every new trace (``always_off``)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    for name in ("_server_tracer", "_sql_tracer", "_client_tracer", "propagation_fields"):
        monkeypatch.setattr(tracing, name, getattr(tracing, name))  # restored after
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer(tracing.TRACER_NAME))
    return memory


def test_a_dropped_new_trace_is_one_object_that_acts_as_the_sdk_s_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request that starts a trace its sampler drops gets a DroppedRequest: the ids
    the SDK's random generator would have drawn at that point, the SDK's flags for a
    dropped span, a SpanContext only when asked, and in its context children that are
    dropped too, client spans suppressed, and OTel's own end() ignored."""
    import random

    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    memory = _dropping_tracer(monkeypatch)
    random.seed(7)
    expected_trace, expected_span = (
        RandomIdGenerator().generate_trace_id(),
        RandomIdGenerator().generate_span_id(),
    )
    random.seed(7)
    request = tracing.server_span(_scope())
    assert isinstance(request, tracing.DroppedRequest)
    assert (request.trace_id, request.span_id) == (expected_trace, expected_span)
    assert request._lazy is None  # no SpanContext made yet: the log line reads the ids
    assert tracing.current_ids() == (f"{expected_trace:032x}", f"{expected_span:016x}")
    assert request._lazy is None
    assert trace_api.get_current_span() is request
    ctx = request.get_span_context()
    assert (ctx.trace_id, ctx.span_id, ctx.is_remote, ctx.is_valid) == (
        expected_trace,
        expected_span,
        False,
        True,
    )
    assert ctx.trace_flags == TraceFlags(TraceFlags.RANDOM_TRACE_ID)  # as the SDK's dropped
    assert request.get_span_context() is ctx
    assert not request.is_recording()
    assert repr(request) == f"DroppedRequest({ctx!r})"
    assert not is_instrumentation_enabled()
    headers = tracing.inject_trace_headers({})
    assert headers["traceparent"] == f"00-{expected_trace:032x}-{expected_span:016x}-02"
    assert tracing.current_traceparent() == headers["traceparent"]
    with tracing.ingest_span("alertmanager", alerts=1) as child:  # an SDK span: dropped too
        assert not child.is_recording()
        assert child.get_span_context().trace_id == expected_trace
    assert tracing.client_scope("EVALSHA", {"db.system": "redis"}) is None
    request.end()  # OTel's Span.end(): a non-recording span ignores it
    assert trace_api.get_current_span() is request
    request.end(route="/readyz", status=200, error=None)  # the middleware's
    assert trace_api.get_current_span() is trace_api.INVALID_SPAN
    assert is_instrumentation_enabled()
    assert memory.get_finished_spans() == ()


def test_a_dropped_request_ended_in_another_context_does_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _dropping_tracer(monkeypatch)
    request = contextvars.copy_context().run(lambda: tracing.server_span(_scope()))
    assert isinstance(request, tracing.DroppedRequest)
    request.end(route="/readyz", status=200, error=None)  # OTel's detach logs, never raises
    assert is_instrumentation_enabled()


def test_the_middleware_reads_the_request_id_and_trace_context_in_one_pass(
    server_exporter: InMemorySpanExporter,
) -> None:
    """_request_headers: the first sound X-Request-ID (else a fresh one) and whether a
    propagation header came, which server_span is then told instead of looking."""
    from firewatch.observability.middleware import _request_headers

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    scope = _scope(**{"x-request-id": "bad id!"})
    scope["headers"] += [(b"x-request-id", b"req-1"), (b"x-request-id", b"req-2")]
    assert _request_headers(scope) == ("req-1", False)
    request_id, carried = _request_headers(_scope(traceparent=parent))
    assert len(request_id) == 32
    assert carried
    span = tracing.server_span(_scope(traceparent=parent), carried)
    assert isinstance(span, tracing.ServerSpan)  # continues the caller's trace
    ids = tracing.current_ids()
    assert ids is not None
    assert ids[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    span.end(route=None, status=200, error=None)
    (done,) = server_exporter.get_finished_spans()
    assert done.parent is not None
    assert done.parent.span_id == 0x00F067AA0BA902B7
