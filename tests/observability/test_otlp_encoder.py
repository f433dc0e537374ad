"""firewatch's OTLP span encoder against the SDK's: the same request, message for message.

Spans are made by a real SDK TracerProvider (so they carry what the SDK really
records: cleaned attributes, events, links, status, remote parents, trace state) and
encoded both ways; the two requests must serialize to the same bytes (deterministic
serialization of the parsed messages: field order cannot differ, and NaN compares
by its bits).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from firewatch.observability import otlp

text = st.text(max_size=30)
scalar = st.one_of(
    text,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
value = st.one_of(
    scalar,
    st.lists(text, max_size=4),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.lists(st.booleans(), max_size=3),
)
attributes = st.dictionaries(st.text(min_size=1, max_size=20), value, max_size=8)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)


@st.composite
def span_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(text),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "late_attributes": draw(attributes),
        "events": draw(st.lists(st.tuples(text, attributes), max_size=3)),
        "links": draw(
            st.lists(st.tuples(trace_ids, span_ids, st.booleans(), attributes), max_size=2)
        ),
        "status": draw(
            st.sampled_from(
                [
                    None,
                    (StatusCode.OK, None),
                    (StatusCode.ERROR, "boom"),
                    (StatusCode.ERROR, None),
                    (StatusCode.UNSET, None),
                ]
            )
        ),
        "parent": draw(
            st.one_of(
                st.none(),
                st.tuples(
                    trace_ids,
                    span_ids,
                    st.booleans(),
                    st.lists(
                        st.tuples(
                            st.sampled_from(["a", "vendor", "k2"]),
                            st.sampled_from(["1", "x-y", "zz"]),
                        ),
                        max_size=2,
                        unique_by=lambda kv: kv[0],
                    ),
                ),
            )
        ),
        "child": draw(st.booleans()),
        "scope": draw(
            st.sampled_from(
                [
                    ("firewatch.http", "1.0", None),
                    ("asyncpg", None, None),
                    ("redis", "0.66b1", "https://opentelemetry.io/schemas/1.11.0"),
                    ("", None, None),
                ]
            )
        ),
        "provider": draw(st.integers(min_value=0, max_value=2)),
    }


def _providers() -> tuple[list[TracerProvider], InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    resources = [
        Resource.create({"service.name": "firewatch", "service.version": "1.2.3"}),
        Resource({"service.name": "other", "host.arch": "amd64", "n": 3}, "https://x/1.0"),
        # equal to the first but another object: grouped with it, as the SDK does
        Resource.create({"service.name": "firewatch", "service.version": "1.2.3"}),
    ]
    providers = []
    for resource in resources:
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)
    return providers, exporter


def _make(specs: list[dict[str, Any]]) -> list[ReadableSpan]:
    providers, exporter = _providers()
    for spec in specs:
        name, version, schema = spec["scope"]
        tracer = providers[spec["provider"]].get_tracer(name, version, schema)
        parent_ctx = None
        if spec["parent"] is not None:
            tid, sid, remote, state = spec["parent"]
            parent_ctx = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        tid,
                        sid,
                        is_remote=remote,
                        trace_flags=TraceFlags(1),
                        trace_state=TraceState(state),
                    )
                ),
                otel_context.Context(),
            )
        links = [
            Link(SpanContext(t, s, is_remote=r, trace_flags=TraceFlags(1)), attrs)
            for t, s, r, attrs in spec["links"]
        ]
        with tracer.start_as_current_span(
            spec["name"],
            context=parent_ctx,
            kind=spec["kind"],
            attributes=spec["attributes"],
            links=links,
        ) as span:
            span.set_attributes(spec["late_attributes"])
            for event_name, event_attrs in spec["events"]:
                span.add_event(event_name, event_attrs)
            if spec["status"] is not None:
                code, description = spec["status"]
                span.set_status(Status(code, description))
            if spec["child"]:
                with tracer.start_as_current_span("child", attributes={"db.system": "redis"}):
                    pass
    return list(exporter.get_finished_spans())


def _assert_same(spans: list[ReadableSpan]) -> None:
    ours = otlp.encode_spans(spans).SerializeToString(deterministic=True)
    theirs = sdk_encode(spans).SerializeToString(deterministic=True)
    assert ours == theirs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(span_specs(), min_size=1, max_size=6))
def test_same_request_as_the_sdk_encoder(specs: list[dict[str, Any]]) -> None:
    _assert_same(_make(specs))


def test_exception_events_and_error_status() -> None:
    providers, exporter = _providers()
    tracer = providers[0].get_tracer("firewatch")
    with pytest.raises(RuntimeError), tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER):
        raise RuntimeError("no such incident")
    spans = list(exporter.get_finished_spans())
    assert spans[0].events
    assert spans[0].status.status_code is StatusCode.ERROR
    _assert_same(spans)


def test_repeated_attributes_come_from_the_cache_with_their_own_type() -> None:
    """``True == 1 == 1.0``: a cached ``True`` must not be sent for an ``int`` 1."""
    providers, exporter = _providers()
    tracer = providers[0].get_tracer("firewatch")
    for v in (True, 1, 1.0, "1", True, 1):
        with tracer.start_as_current_span("s", attributes={"k": v}):
            pass
    spans = list(exporter.get_finished_spans())
    _assert_same(spans)
    decoded = otlp.encode_spans(spans).resource_spans[0].scope_spans[0].spans
    kinds = [s.attributes[0].value.WhichOneof("value") for s in decoded]
    assert kinds == [
        "bool_value",
        "int_value",
        "double_value",
        "string_value",
        "bool_value",
        "int_value",
    ]


def test_the_attribute_cache_stays_bounded() -> None:
    providers, exporter = _providers()
    tracer = providers[0].get_tracer("firewatch")
    for i in range(otlp._ATTRIBUTE_CACHE_MAX + 50):
        with tracer.start_as_current_span(
            "s", attributes={"url.path": f"/api/v1/incidents/INC-{i}"}
        ):
            pass
    long_path = "/" + "x" * (otlp._CACHED_STR_MAX + 1)
    with tracer.start_as_current_span("s", attributes={"url.path": long_path}):
        pass
    spans = list(exporter.get_finished_spans())
    _assert_same(spans)
    assert len(otlp._span_attribute_cache) <= otlp._ATTRIBUTE_CACHE_MAX
    # a long value (a client's URL path) is encoded, never kept
    assert not any(value == long_path for _key, _kind, value in otlp._span_attribute_cache)


def test_a_value_protobuf_cannot_carry_is_left_out_as_the_sdk_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lone surrogate is no UTF-8 and an integer beyond int64 is no int64: the SDK
    logs and drops that attribute and keeps the span; so does firewatch's encoder."""
    providers, exporter = _providers()
    tracer = providers[0].get_tracer("firewatch")
    with tracer.start_as_current_span(
        "s", attributes={"bad": "\udcff", "big": 2**70, "ok": "yes", "list": ("a", "\ud800")}
    ):
        pass
    spans = list(exporter.get_finished_spans())
    with caplog.at_level(logging.WARNING):
        ours = otlp.encode_spans(spans)
    theirs = sdk_encode(spans)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )
    assert [a.key for a in ours.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert "bad" in caplog.text
    assert "big" in caplog.text


def test_a_span_made_outside_a_provider_without_status_or_scope() -> None:
    """ReadableSpans can be built directly (other processors, tests): no instrumentation
    scope, no status, no times. The SDK's encoder then leaves those fields out."""
    context = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    resource = Resource({"service.name": "firewatch"})
    no_status: Any = None  # outside the SDK's annotation, and exactly what is tested here
    spans = [
        ReadableSpan(name="bare", context=context, resource=resource, status=no_status),
        ReadableSpan(name="", context=context, resource=resource, attributes={"a": 1}),
    ]
    _assert_same(spans)
    decoded = otlp.encode_spans(spans).resource_spans[0].scope_spans[0]
    assert not decoded.spans[0].HasField("status")
    assert decoded.spans[1].HasField("status")


def test_the_exporter_sends_the_encoded_request_as_it_is() -> None:
    """FastOTLPSpanExporter hands gRPC the bytes encode_spans_bytes wrote (no parse and
    re-serialization): a real OTLP/gRPC receiver gets every span, also after the
    exporter rebuilt its channel and stub as the SDK does on UNAVAILABLE."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    from firewatch.observability.otlp import FastOTLPSpanExporter
    from tests.observability.otlp import OtlpReceiver

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "exported"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("firewatch")
    for name in ("first", "second"):
        with tracer.start_as_current_span(name, attributes={"db.system": "postgresql"}):
            pass
    receiver = OtlpReceiver().start()
    exporter = FastOTLPSpanExporter(endpoint=receiver.endpoint, insecure=True, timeout=5)
    try:
        spans = memory.get_finished_spans()
        assert type(exporter._client).__name__ == "_EncodedTraceServiceStub"
        assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
        exporter._initialize_channel_and_stub()  # what the SDK calls after UNAVAILABLE
        assert type(exporter._client).__name__ == "_EncodedTraceServiceStub"
        assert exporter.export(spans[1:]) is SpanExportResult.SUCCESS
        received = receiver.wait_for(lambda got: len(got) >= 2)
        assert [(s.name, s.service_name, s.attributes) for s in received] == [
            ("first", "exported", {"db.system": "postgresql"}),
            ("second", "exported", {"db.system": "postgresql"}),
        ]
        assert {s.trace_id for s in received} == {f"{s.context.trace_id:032x}" for s in spans}
    finally:
        exporter.shutdown()
        receiver.stop()
        provider.shutdown()
