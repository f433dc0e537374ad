"""firewatch's light spans (observability/spans.py) against the SDK's own spans: the same
operations on two providers with the same ids give the same exported span, and a new
trace is kept or dropped exactly as the provider's sampler says."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from firewatch.observability import otlp
from firewatch.observability.spans import (
    _NO_OPS,
    LightSpan,
    LightTracer,
    _children_kept,
    _does_nothing,
    _root_rule,
)


class CountingIds(RandomIdGenerator):
    """The same id sequence for each provider built with one."""

    def __init__(self) -> None:
        self._next = 0x1000

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        self._next += 1
        return self._next << 64


def _pair(sampler: Sampler = ALWAYS_ON) -> Iterator[tuple[Any, InMemorySpanExporter]]:
    for _ in range(2):
        memory = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler, id_generator=CountingIds())
        provider.add_span_processor(SimpleSpanProcessor(memory))
        yield provider, memory


def _fields(span: ReadableSpan) -> dict[str, Any]:
    """What an exporter reads of a span, except its times."""
    return {
        "name": span.name,
        "context": span.context,
        "parent": span.parent,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [(link.context, dict(link.attributes or {})) for link in span.links],
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource,
        "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version)
        if span.instrumentation_scope
        else None,
    }


Ops = Callable[[trace.Span], None]


def _both(
    ops: Ops,
    sampler: Sampler = ALWAYS_ON,
    parent: Context | None = None,
    *,
    root: bool = False,
    attributes: dict[Any, Any] | None = None,
) -> list[Any]:
    """``ops`` on an SDK span and on a light span of providers alike; their exports.
    ``root``: the light span starts as ServerSpan starts a new trace (dropped_root,
    then start_span with the trace id it kept)."""
    (sdk_provider, sdk_memory), (light_provider, light_memory) = _pair(sampler)
    context = parent if parent is not None else otel_context.Context()
    if attributes is None:
        attributes = {"url.path": "/api/v1/incidents/INC-7", "http.request.method": "GET"}
    sdk_span = sdk_provider.get_tracer("firewatch.http", "1").start_span(
        "GET", context=context, kind=SpanKind.SERVER, attributes=attributes
    )
    light = LightTracer(light_provider, "firewatch.http", "1")
    trace_id = 0
    if root:
        trace_id, dropped = light.dropped_root()
        assert trace_id
        assert dropped is None
    light_span = light.start_span("GET", context, SpanKind.SERVER, attributes, trace_id)
    for span in (sdk_span, light_span):
        ops(span)
        span.end()
        span.end()  # a second end changes nothing
        span.set_attribute("after", "end")  # nor does a change after it
        span.update_name("renamed after end")
    exports = [sdk_memory.get_finished_spans(), light_memory.get_finished_spans()]
    for provider in (sdk_provider, light_provider):
        provider.shutdown()
    return exports


Context = otel_context.Context


def _attributes(span: trace.Span) -> None:
    span.set_attributes({"http.route": "/x", "http.response.status_code": 200})
    span.set_attribute("tags", ["a", "b"])  # a list is kept as a tuple
    span.set_attribute("ok", True)
    span.set_attribute("ratio", 0.5)
    span.set_attribute("bad", cast(Any, {"nested": "dict"}))  # not a valid value: dropped
    span.set_attribute("mixed", cast(Any, ["a", 1]))  # mixed types: dropped
    span.update_name("GET /x")


def _statuses(span: trace.Span) -> None:
    span.set_status(Status(StatusCode.UNSET))  # never set
    span.set_status(StatusCode.ERROR, "boom")
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR, "after OK"))  # OK stays


def _error(span: trace.Span) -> None:
    try:
        raise ValueError("no such incident")
    except ValueError as exc:
        span.record_exception(exc, attributes={"firewatch.extra": 1})
    span.add_event("retry", {"attempt": 2})
    span.add_link(SpanContext(0xABC, 0xDEF, is_remote=True), {"why": "caused by"})
    span.set_status(Status(StatusCode.ERROR))


def _again(span: trace.Span) -> None:
    """Keys set again (they move last), with new ones and ones the SDK refuses."""
    span.set_attributes({"http.route": "/x", "url.path": "/y"})
    span.set_attributes({"http.request.method": "POST", "fresh": 1})
    span.set_attributes(cast(Any, {"": "empty key", 7: "not a string"}))
    span.set_attribute("http.route", "/z")


@pytest.mark.parametrize("ops", [_attributes, _statuses, _error, _again], ids=lambda f: f.__name__)
def test_a_light_span_exports_what_the_sdk_s_span_exports(ops: Ops) -> None:
    (sdk_span,), (light_span,) = _both(ops)
    assert isinstance(light_span, LightSpan)
    assert _fields(light_span) == _fields(sdk_span)
    assert light_span.start_time is not None
    assert light_span.end_time is not None
    assert light_span.start_time <= light_span.end_time
    stack = [e.attributes or {} for e in light_span.events if e.name == "exception"]
    for event in stack:
        assert "ValueError: no such incident" in str(event["exception.stacktrace"])


def test_attributes_a_span_starts_with_are_kept_as_the_sdk_keeps_them() -> None:
    """Plain values with string keys are stored as given; anything else goes through
    the SDK's cleaning (sequences made tuples, keys made strings or dropped)."""
    given = {"db.system": "postgresql", "port": 5432, "ok": True, "ratio": 0.5}
    odd: dict[Any, Any] = {**given, "tags": ["a", "b"], "": "empty key", 7: "str(7)", "n": None}
    for attributes in (given, odd):
        (sdk_span,), (light_span,) = _both(_untouched, attributes=attributes)
        assert _fields(light_span) == _fields(sdk_span)
    # as the SDK: a non-string key is made a string, a None value kept, an empty key goes
    assert dict(light_span.attributes or {}) == {
        **given,
        "tags": ("a", "b"),
        "7": "str(7)",
        "n": None,
    }


def test_span_limits_from_the_standard_variables_apply_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")

    def ops(span: trace.Span) -> None:
        span.set_attribute("long", "abcdefgh")
        span.set_attribute("list", ["abcdefgh", "ab"])
        span.set_attribute("over", 1)  # beyond the three: the oldest go, counted
        span.add_event("one")
        span.add_event("two")  # over the event limit: "one" goes

    (sdk_span,), (light_span,) = _both(ops)
    assert _fields(light_span) == _fields(sdk_span)
    assert dict(light_span.attributes or {}) == {
        "long": "abcd",
        "list": ("abcd", "ab"),
        "over": 1,
    }
    assert light_span.dropped_attributes == 2  # url.path and http.request.method
    assert [e.name for e in light_span.events] == ["two"]
    assert light_span.dropped_events == 1


def test_a_child_continues_its_parent_s_trace_and_trace_state() -> None:
    state = TraceState([("vendor", "x1")])
    remote = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=state,
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote), otel_context.Context())
    (sdk_span,), (light_span,) = _both(_attributes, ParentBased(ALWAYS_OFF), parent)
    assert _fields(light_span) == _fields(sdk_span)
    assert light_span.context is not None
    assert light_span.parent == remote
    assert light_span.context.trace_id == remote.trace_id
    assert light_span.context.trace_state == state


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, DEFAULT_ON, DEFAULT_OFF, ParentBasedTraceIdRatio(0.1)],
    ids=["always_on", "parentbased_always_on", "parentbased_always_off", "parentbased_ratio"],
)
def test_a_child_of_a_sampled_local_parent_is_made_as_the_sdk_makes_it(sampler: Sampler) -> None:
    """Made without asking the sampler (its answer for such a child is known, see
    _children_kept): the same span as the SDK's, which asked it."""
    assert _children_kept(sampler)
    local = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID),
        trace_state=TraceState([("vendor", "x1")]),
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(local), otel_context.Context())
    (sdk_span,), (light_span,) = _both(_error, sampler, parent)
    assert _fields(light_span) == _fields(sdk_span)
    assert light_span.parent == local


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, DEFAULT_ON, ParentBasedTraceIdRatio(1.0)],
    ids=["always_on", "parentbased_always_on", "parentbased_ratio_1"],
)
def test_a_new_trace_the_rule_keeps_is_made_as_the_sdk_makes_it(sampler: Sampler) -> None:
    (sdk_span,), (light_span,) = _both(_attributes, sampler, root=True)
    assert _fields(light_span) == _fields(sdk_span)
    assert light_span.parent is None


def test_only_samplers_that_keep_every_such_child_skip_the_question() -> None:
    assert not _children_kept(ALWAYS_OFF)
    assert not _children_kept(TraceIdRatioBased(0.5))
    assert not _children_kept(ParentBased(ALWAYS_ON, local_parent_sampled=ALWAYS_OFF))
    assert not _children_kept(ParentBased(Stubborn(), local_parent_sampled=Stubborn()))
    assert not _children_kept(Stubborn())


def test_a_dropped_span_is_the_sdk_s_non_recording_span() -> None:
    sdk_provider, light_provider = (p for p, _ in _pair(ALWAYS_OFF))
    context = otel_context.Context()
    sdk_span = sdk_provider.get_tracer("t").start_span("GET", context=context)
    light_span = LightTracer(light_provider, "t").start_span("GET", context, SpanKind.SERVER, {})
    assert type(light_span) is type(sdk_span) is trace.NonRecordingSpan
    assert light_span.get_span_context() == sdk_span.get_span_context()


def _untouched(span: trace.Span) -> None:
    """Nothing beyond its start: the light span keeps the shared UNSET status."""


@pytest.mark.parametrize(
    ("ops", "remote"),
    [(_untouched, False), (_attributes, False), (_statuses, True), (_error, True)],
    ids=["untouched", "attributes", "statuses-remote-parent", "error-remote-parent"],
)
def test_the_encoder_writes_a_light_span_as_the_sdk_s(ops: Ops, remote: bool) -> None:
    """firewatch's OTLP encoder reads a light span's fields directly (not through
    ReadableSpan's properties, otlp._span): the request equals the SDK encoder's for
    the SDK span, once times agree, with a remote parent and its trace state too."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    parent = None
    if remote:
        caller = SpanContext(
            0x4BF92F3577B34DA6A3CE929D0E0E4736,
            0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "v1")]),
        )
        parent = trace.set_span_in_context(trace.NonRecordingSpan(caller), Context())
    (sdk_span,), (light_span,) = _both(ops, parent=parent)
    assert type(light_span) is LightSpan
    light_span._start_time, light_span._end_time = sdk_span.start_time, sdk_span.end_time
    for event, sdk_event in zip(light_span.events, sdk_span.events, strict=True):
        event._timestamp = sdk_event.timestamp
    ours = otlp.encode_spans([light_span]).SerializeToString(deterministic=True)
    theirs = encode_spans([sdk_span]).SerializeToString(deterministic=True)
    assert ours == theirs


# ------------------------------------------------------------------ new traces


class Stubborn(Sampler):
    """Not one of the SDK's samplers: keeps every other trace, and gives the span
    attributes of its own, which the span must then carry."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.asked.append(dict(attributes or {}))
        if (trace_id >> 65) % 2:  # CountingIds: odd counts in the high bits, alternating here
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampled.by": "stubborn"})

    def get_description(self) -> str:
        return "Stubborn"


SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
    "traceidratio": TraceIdRatioBased(0.25),
    "parentbased_traceidratio": ParentBasedTraceIdRatio(0.25),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_new_trace_is_dropped_by_the_rule_exactly_when_the_sampler_drops_it(name: str) -> None:
    sampler = SAMPLERS[name]
    assert _root_rule(sampler) is not None  # every OTEL_TRACES_SAMPLER value has one
    tracer = LightTracer(TracerProvider(sampler=sampler), "firewatch.http")
    empty = otel_context.Context()
    kept = 0
    for _ in range(2000):
        trace_id, dropped = tracer.dropped_root()
        decision = sampler.should_sample(empty, trace_id, "GET", SpanKind.SERVER).decision
        assert (dropped is None) == (decision is Decision.RECORD_AND_SAMPLE)
        if dropped is not None:
            ctx = dropped.get_span_context()
            assert ctx.trace_id == trace_id
            assert ctx.is_valid
            assert not ctx.is_remote
            assert ctx.trace_flags == TraceFlags(TraceFlags.RANDOM_TRACE_ID)  # not sampled
        else:
            kept += 1
            span = tracer.start_span("GET", empty, SpanKind.SERVER, {"k": "v"}, trace_id)
            assert isinstance(span, LightSpan)
            assert dict(span.attributes or {}) == {"k": "v"}
            assert span.get_span_context().trace_id == trace_id  # the id judged is kept
            assert span.get_span_context().trace_flags.sampled
            span.end()
    expected = {"always_on": 2000, "parentbased_always_on": 2000}.get(name, 0)
    if "ratio" in name:
        assert 350 < kept < 650  # ~25%
    else:
        assert kept == expected


def test_another_sampler_is_asked_for_every_new_trace_with_the_request_s_attributes() -> None:
    sampler = Stubborn()
    assert _root_rule(sampler) is None
    assert _root_rule(ParentBased(sampler)) is None
    assert _root_rule(type("Sub", (TraceIdRatioBased,), {})(0.5)) is None  # a subclass
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=CountingIds())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = LightTracer(provider, "firewatch.http")
    sampler.asked.clear()
    spans = []
    for _ in range(6):
        trace_id, dropped = tracer.dropped_root()
        assert (trace_id, dropped) == (0, None)  # no rule: start_span asks the sampler
        span = tracer.start_span("GET", otel_context.Context(), SpanKind.SERVER, {"k": "v"})
        spans.append(span)
        span.end()
    assert sampler.asked == [{"k": "v"}] * 6
    kept = memory.get_finished_spans()
    assert len(kept) == 3 == sum(isinstance(s, LightSpan) for s in spans)  # every other
    assert all(dict(s.attributes or {}) == {"sampled.by": "stubborn"} for s in kept)


def test_a_rule_that_disagrees_with_its_sampler_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule is checked against the sampler before use: a TraceIdRatioBased that
    decides otherwise than by its bound (an SDK that changed) gets none."""
    sampler = TraceIdRatioBased(0.5)
    assert _root_rule(sampler) is not None
    original = TraceIdRatioBased.should_sample

    def changed(self: TraceIdRatioBased, parent: Any, trace_id: int, *args: Any) -> Any:
        if trace_id % 3 == 0:  # drops a third of what its bound keeps
            return SamplingResult(Decision.DROP)
        return original(self, parent, trace_id, *args)

    monkeypatch.setattr(TraceIdRatioBased, "should_sample", changed)
    assert _root_rule(sampler) is None


def test_with_the_sdk_s_random_ids_a_span_id_is_the_generator_s_draw() -> None:
    """With the default RandomIdGenerator, LightTracer draws span ids itself as that
    generator does (random.getrandbits(64)): the same seed, the same ids."""
    import random

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = LightTracer(provider, "firewatch.http")
    parent = SpanContext(0xABC << 64, 0xDEF, False, TraceFlags(TraceFlags.SAMPLED))
    random.seed(11)
    expected = RandomIdGenerator().generate_span_id()
    random.seed(11)
    span = tracer.start_span("SELECT", Context(), SpanKind.CLIENT, {}, parent=parent)
    assert span.get_span_context().span_id == expected
    assert span.get_span_context().trace_id == 0xABC << 64
    assert span.get_span_context().trace_flags == TraceFlags(TraceFlags.SAMPLED)
    span.end()
    provider.shutdown()


class Recording(SpanProcessor):
    """Records which hook saw which span, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.calls.append(("on_start", span.name))

    def _on_ending(self, span: Any) -> None:
        self.calls.append(("_on_ending", span.name))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("on_end", span.name))


def test_processors_added_after_the_tracer_see_its_spans_and_every_hook_is_called() -> None:
    """A light span calls the processors' hooks itself (not through the provider's
    multi-processor): one added later is found, and ``_on_ending`` is called as the
    SDK's span calls it, before ``on_end``."""
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracer = LightTracer(provider, "firewatch.http")
    first = Recording()
    provider.add_span_processor(first)
    memory = InMemorySpanExporter()
    span = tracer.start_span("GET", Context(), SpanKind.SERVER, {"url.path": "/a"})
    provider.add_span_processor(SimpleSpanProcessor(memory))  # while the span is open
    span.end()
    later = Recording()
    provider.add_span_processor(later)
    tracer.start_span("SELECT", Context(), SpanKind.CLIENT, {}).end()
    assert first.calls == [
        ("on_start", "GET"),
        ("_on_ending", "GET"),
        ("on_end", "GET"),
        ("on_start", "SELECT"),
        ("_on_ending", "SELECT"),
        ("on_end", "SELECT"),
    ]
    assert later.calls == [("on_start", "SELECT"), ("_on_ending", "SELECT"), ("on_end", "SELECT")]
    assert [s.name for s in memory.get_finished_spans()] == ["GET", "SELECT"]
    provider.shutdown()


class RecordOnly(Sampler):
    """Records every span, samples none (a span the batch processor must not export)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_the_batch_processor_gets_sampled_light_spans_only() -> None:
    """Its queue is given a span directly, under its on_end's own test (sampled)."""
    exported = []
    for sampler in (RecordOnly(), ALWAYS_ON):
        memory = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(memory))
        span = LightTracer(provider, "firewatch.http").start_span(
            "GET", Context(), SpanKind.SERVER, {}
        )
        assert isinstance(span, LightSpan)
        assert span.is_recording()
        span.end()
        provider.force_flush()
        exported.append([s.name for s in memory.get_finished_spans()])
        provider.shutdown()
    assert exported == [[], ["GET"]]


def test_only_hooks_with_an_empty_body_are_skipped() -> None:
    def empty(self: object, span: object, parent_context: object = None) -> None:
        """A docstring only."""

    def works(self: object, span: object) -> None:
        print(span)

    assert _does_nothing(empty)
    assert not _does_nothing(works)
    assert not _does_nothing(len)  # no bytecode to read: called
    # the SDK's own hooks that do nothing (1.45), and its batch processor's on_end
    assert {BatchSpanProcessor.on_start, SimpleSpanProcessor._on_ending} <= _NO_OPS
    assert BatchSpanProcessor.on_end not in _NO_OPS
    assert SimpleSpanProcessor.on_end not in _NO_OPS
