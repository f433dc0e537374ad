"""Light spans: firewatch's HTTP server, SQL and Redis spans, built from the SDK's parts.

Why: a sampled GET incident makes three spans, and the SDK's ``Span`` costs far more
than what firewatch records in them. Each span took a lock per change, validated
every attribute value through ``BoundedAttributes`` (21 value checks and 17 locked
item writes for the three), built a bounded list for events and another for links,
asked an ABC ``isinstance`` per parent look-up, and at its end copied itself into a
``ReadableSpan`` for the processors: ~300 Python calls. On the main thread a sampled
GET cost 537k instructions above an unsampled one with SDK spans, 162k with these
(``python -m bench.inprocess --instructions``, ADR-007 ninth note).

:class:`LightTracer` stands in for the SDK ``Tracer`` of one instrumentation scope:
it takes the provider's own sampler, id generator, resource and span processors
(the batch processor and its OTLP exporter, the URL scrubber), and makes each span
as ``Tracer.start_span`` does: the same trace and span ids, the sampler asked with
the same arguments, the same flags and trace state, a ``NonRecordingSpan`` when the
sampler drops it, the processors' ``on_start``, ``_on_ending`` and ``on_end``
(called by the span itself, see :meth:`LightTracer._refresh`; for the samplers
``OTEL_TRACES_SAMPLER`` names, the sampler's answer for a new trace and for a child
of a sampled local parent is computed by its own rule, checked against it at
start-up: :func:`_root_rule`, :func:`_children_kept`). What differs is the
span object: a :class:`LightSpan` is a plain-``dict`` span that is its own
``ReadableSpan`` once ended (nothing changes it after ``end``), so exporters,
the in-memory exporter of the tests and firewatch's OTLP encoder read it like any
SDK span.

What it gives up, on purpose: thread safety (each span is used by the one request
that made it, on the event loop's thread), the SDK's internal tracer metrics
(``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) and the experimental tracer
configurator. Span limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``,
``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, event and link limits) are read as the SDK
reads them and applied. Other spans (ingest, grouping, notifications, scoring,
redis-py's) stay SDK spans; they are children of these as of any span.
"""

from __future__ import annotations

import dis
import logging
import random
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.attributes import (
    BoundedAttributes,
    _clean_attribute_value,
    _is_non_custom_str,
)
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

__all__ = ["UNSET_STATUS", "LightSpan", "LightTracer"]

_UNSET: Final = Status(StatusCode.UNSET)
_getrandbits: Final = random.getrandbits  # RandomIdGenerator's source (ids, not secrets)
UNSET_STATUS: Final = _UNSET  # every light span's status until one is set (the encoder's)
_PLAIN: Final = frozenset({str, bool, int, float})  # values the SDK keeps as they are
_STR: Final = frozenset({str})
#: ``SpanContext`` is a tuple (trace_id, span_id, is_remote, flags, state, is_valid); its
#: ``__new__`` (a Python call) only fills in the defaults and computes is_valid, which
#: for a light span's own ids (drawn non-zero, in range) is True: made directly.
_new_tuple: Final = tuple.__new__
_TRACE_MAX: Final = (1 << 128) - 1  # the largest ids (W3C Trace Context: 16 and 8
_SPAN_MAX: Final = (1 << 64) - 1  # bytes; neither may be 0)
_SAMPLED_BIT: Final = int(TraceFlags.SAMPLED)
_RANDOM_BIT: Final = int(TraceFlags.RANDOM_TRACE_ID)
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED: Final = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED_RANDOM: Final = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_NOT_SAMPLED_RANDOM: Final = TraceFlags(TraceFlags.RANDOM_TRACE_ID)


class _Lookup:
    """start_span's default parent: the span of the context it is given."""


_LOOKUP: Final = _Lookup()


def _does_nothing(function: object) -> bool:
    """Whether ``function``'s body is empty (a docstring, ``pass``): read from its
    bytecode, so a hook the SDK gives a body in a later version is called again."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code)]
    ops = [op for op in ops if op[0] not in {"RESUME", "NOP"}]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


#: The SDK's span-processor hooks that do nothing (the base class's, and the batch and
#: simple processors' ``on_start`` and ``_on_ending``): not called for a light span.
_NO_OPS: Final = frozenset(
    hook
    for hook in (
        SpanProcessor.on_start,
        SpanProcessor._on_ending,
        SpanProcessor.on_end,
        BatchSpanProcessor.on_start,
        BatchSpanProcessor._on_ending,
        SimpleSpanProcessor.on_start,
        SimpleSpanProcessor._on_ending,
    )
    if _does_nothing(hook)
)

Hook = Callable[..., object]


class LightTracer:
    """Starts the spans of one instrumentation scope from ``provider``'s sampler, id
    generator, resource and processors (see the module's docstring)."""

    __slots__ = (
        "_children_kept",
        "_emit",
        "_fast_cap",
        "_ids",
        "_limits",
        "_multi",
        "_on_end",
        "_on_ending",
        "_on_start",
        "_processor",
        "_random_ids",
        "_resource",
        "_root_rule",
        "_sampler",
        "_seen",
        "drop_rule",
        "scope",
    )

    def __init__(self, provider: TracerProvider, name: str, version: str | None = None) -> None:
        sdk = provider.get_tracer(name, version)  # the SDK tracer this one stands in for
        if not isinstance(sdk, Tracer):
            raise TypeError(f"{type(provider).__name__} gave no SDK tracer")
        self._sampler = sdk.sampler
        self._ids = sdk.id_generator
        self._resource = sdk.resource
        self._processor = sdk.span_processor
        # The limits the provider gives its own spans when made without explicit ones
        # (configure() makes it so): the SDK reads the OTEL_*_LIMIT variables here too.
        self._limits = SpanLimits()
        self.scope = InstrumentationScope(name, version)
        self._root_rule = _root_rule(self._sampler)
        self._children_kept = _children_kept(self._sampler)
        #: The root rule when the ids are the SDK's default random ones: then a caller
        #: may draw a new trace's ids with ``random.getrandbits`` (what that generator
        #: does) and judge them itself (the HTTP server span, tracing.ServerSpan).
        self._random_ids = type(self._ids) is RandomIdGenerator
        self.drop_rule = self._root_rule if self._random_ids else None
        #: How many attributes a span may hold for them to be stored as given (plain
        #: values under no length limit: see LightSpan._set); 0: never.
        cap = self._limits.max_span_attributes
        self._fast_cap = (
            0
            if self._limits.max_span_attribute_length is not None
            else sys.maxsize
            if cap is None
            else cap
        )
        # The processors' hooks, called directly (see _refresh), re-read whenever the
        # provider's list of processors changes (add_span_processor replaces its tuple).
        processor = self._processor
        self._multi = processor if type(processor) is SynchronousMultiSpanProcessor else None
        self._seen: tuple[SpanProcessor, ...] | None = None
        self._on_start: tuple[Hook, ...] = ()
        self._on_ending: tuple[Hook, ...] = ()
        self._on_end: tuple[Hook, ...] = ()
        self._emit: tuple[Hook, ...] = ()
        self._refresh()

    def _refresh(self) -> None:
        """The hooks a light span calls: each processor's ``on_start``, ``_on_ending``
        and ``on_end`` that does something (:data:`_NO_OPS`), and for the SDK's batch
        processor the ``emit`` of its queue, which its ``on_end`` calls for a sampled
        span.

        Why: through the provider's multi-processor a sampled GET's three spans made
        ~30 Python calls that did nothing (the batch processor's ``on_start``, the
        multi-processor's loops, the sampled-flag properties), a fifth of what a span
        cost on the event loop (``sys.settrace`` opcode counts, ADR-007 eleventh
        note). A processor other than the SDK's multi-processor is called as it is."""
        multi = self._multi
        if multi is None:
            processors: tuple[Any, ...] = (self._processor,)
        else:
            processors = self._seen = multi._span_processors
        on_start: list[Hook] = []
        on_ending: list[Hook] = []
        on_end: list[Hook] = []
        emit: list[Hook] = []
        for processor in processors:
            kind = type(processor)
            if getattr(kind, "on_start", None) not in _NO_OPS:
                on_start.append(processor.on_start)
            if getattr(kind, "_on_ending", None) not in _NO_OPS and hasattr(kind, "_on_ending"):
                on_ending.append(processor._on_ending)
            queue: Any = getattr(processor, "_batch_processor", None)
            if kind is BatchSpanProcessor and callable(getattr(queue, "emit", None)):
                emit.append(queue.emit)
            elif getattr(kind, "on_end", None) not in _NO_OPS:
                on_end.append(processor.on_end)
        self._on_start, self._on_ending = tuple(on_start), tuple(on_ending)
        self._on_end, self._emit = tuple(on_end), tuple(emit)

    def new_span_id(self) -> int:
        """A new span id: the SDK's random generator's draw, made here when it is that
        generator (``random.getrandbits``, not 0), else asked of the provider's."""
        if self._random_ids:
            span_id = _getrandbits(64)
            if span_id:
                return span_id
        drawn: int = self._ids.generate_span_id()
        return drawn

    def new_trace_id(self) -> int:
        """A trace id from the provider's id generator."""
        trace_id: int = self._ids.generate_trace_id()
        return trace_id

    def dropped_root(self) -> tuple[int, NonRecordingSpan | None]:
        """For a span that starts a trace: a new trace id and, if the sampler drops a
        root span of that id, the span ``start_span`` would have made; else
        ``(trace_id, None)``, the id to hand to ``start_span``. ``(0, None)`` when the
        sampler is not one of the SDK's own (ask ``start_span``).

        Why: 9 requests in 10 take this path at 10% sampling. Decided by the sampler's
        own rule (:func:`_root_rule`) it costs the two ids and the span (~8 Python
        calls); through ``start_span``, whose sampler call looks the parent up three
        times through the context, ~30.
        """
        rule = self._root_rule
        if rule is None:
            return 0, None
        ids = self._ids
        trace_id: int = ids.generate_trace_id()
        if trace_id & rule[0] < rule[1]:
            return trace_id, None
        flags = _NOT_SAMPLED_RANDOM if ids.is_trace_id_random() else _NOT_SAMPLED
        context = SpanContext(trace_id, ids.generate_span_id(), False, flags)
        return trace_id, NonRecordingSpan(context)

    def start_span(
        self,
        name: str,
        context: Context,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue],
        trace_id: int = 0,
        parent: SpanContext | _Lookup | None = _LOOKUP,
    ) -> trace.Span:
        """A span of ``kind``, child of ``parent`` (by default: of the span in
        ``context``; a root if there is none): a :class:`LightSpan` if the sampler
        records it, else a ``NonRecordingSpan``, with the ids, flags and trace state
        ``Tracer.start_span`` gives. ``trace_id``: a root's id that
        :meth:`dropped_root` judged and did not drop.

        Where the sampler's answer is known without asking it (a root its rule kept;
        a child of a sampled local parent under a sampler that keeps those, see
        :func:`_children_kept`), the span is made straight away, as the sampler's
        answer would make it.
        """
        if isinstance(parent, _Lookup):
            parent = trace.get_current_span(context).get_span_context()
        # SpanContext is a tuple (trace_id, span_id, is_remote, flags, state, is_valid):
        # unpacked in one step rather than through a property per field (TraceFlags is
        # an int: bit 0 sampled, bit 1 random trace id)
        if parent is not None:
            parent_trace_id, _parent_span_id, remote, parent_flags, state, valid = parent
        if parent is None or not valid:
            parent = None
            random = self._ids.is_trace_id_random()
            if trace_id and self._root_rule is not None:  # kept by the rule
                span_id = self.new_span_id()
                flags = _SAMPLED_RANDOM if random else _SAMPLED
                valid = 0 < trace_id <= _TRACE_MAX and 0 < span_id <= _SPAN_MAX
                span_context = _new_tuple(
                    SpanContext, (trace_id, span_id, False, flags, DEFAULT_TRACE_STATE, valid)
                )
                return LightSpan(name, span_context, None, kind, attributes, self, context)
            trace_id = trace_id or self._ids.generate_trace_id()
        else:
            trace_id = parent_trace_id
            random = bool(parent_flags & _RANDOM_BIT)
            if self._children_kept and parent_flags & _SAMPLED_BIT and not remote:
                span_id = self.new_span_id()
                flags = _SAMPLED_RANDOM if random else _SAMPLED
                span_context = _new_tuple(
                    SpanContext, (trace_id, span_id, False, flags, state, 0 < span_id <= _SPAN_MAX)
                )
                return LightSpan(name, span_context, parent, kind, attributes, self, context)
        result = self._sampler.should_sample(context, trace_id, name, kind, attributes)
        decision = result.decision
        if decision is Decision.RECORD_AND_SAMPLE:
            flags = _SAMPLED_RANDOM if random else _SAMPLED
        else:
            flags = _NOT_SAMPLED_RANDOM if random else _NOT_SAMPLED
        span_context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=result.trace_state,
        )
        if decision is Decision.DROP:
            return NonRecordingSpan(span_context)
        return LightSpan(name, span_context, parent, kind, result.attributes, self, context)


def _root_rule(sampler: Any) -> tuple[int, int] | None:
    """``(mask, bound)`` such that the sampler records a root span of trace id ``t``
    exactly when ``t & mask < bound``, for the samplers ``OTEL_TRACES_SAMPLER`` names
    (``always_on``/``always_off``, ``traceidratio`` and their ``parentbased_`` forms:
    with no parent, ParentBased asks its root sampler); None for any other sampler,
    which is then asked every time. Checked against the sampler itself on a few
    hundred trace ids before it is used: a rule that ever disagrees is not used, nor
    one whose kept spans would not carry the request's attributes unchanged and no
    trace state (what these samplers answer for a root)."""
    from opentelemetry.sdk.trace import sampling

    root = sampler
    if type(root) in {sampling.ParentBased, sampling.ParentBasedTraceIdRatio}:
        root = getattr(root, "_root", None)  # the SDK's name for its root sampler
    rule: tuple[int, int] | None = None
    if root is sampling.ALWAYS_ON:
        rule = (0, 1)
    elif root is sampling.ALWAYS_OFF:
        rule = (0, 0)
    elif type(root) is sampling.TraceIdRatioBased:
        rule = (root.TRACE_ID_LIMIT, root.bound)
    if rule is None:
        return None
    # spread over all 128 bits (a Weyl sequence: no random source needed)
    step = 0x9E3779B97F4A7C15F39CC0605CEDC835
    probes = [(k * step) & ((1 << 128) - 1) for k in range(1, 257)]
    if rule[1] > 0:  # ids just either side of the bound
        probes += [rule[1] - 1, rule[1], rule[1] | (1 << 127)]
    empty = Context()  # no parent: not whatever happens to be current
    given = {"url.path": "/probe"}
    for trace_id in probes:
        result = sampler.should_sample(empty, trace_id, "probe", SpanKind.SERVER, given)
        kept = trace_id & rule[0] < rule[1]
        if kept != (result.decision is not Decision.DROP):
            return None
        if kept and (
            result.decision is not Decision.RECORD_AND_SAMPLE
            or dict(result.attributes or {}) != given
            or result.trace_state
        ):
            return None
    return rule


def _children_kept(sampler: Any) -> bool:
    """Whether ``sampler`` records and samples every child of a sampled local parent,
    with the span's attributes unchanged and the parent's trace state: true of
    ``always_on`` and of the ``parentbased_*`` samplers with their default for such
    a parent (``ALWAYS_ON``), checked against the sampler as :func:`_root_rule` is."""
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace.span import TraceState

    if sampler is not sampling.ALWAYS_ON and not (
        type(sampler) in {sampling.ParentBased, sampling.ParentBasedTraceIdRatio}
        and getattr(sampler, "_local_parent_sampled", None) is sampling.ALWAYS_ON
    ):
        return False
    state = TraceState([("probe", "1")])
    given = {"db.system": "postgresql"}
    step = 0x9E3779B97F4A7C15F39CC0605CEDC835
    for k in range(1, 65):
        trace_id = (k * step) & ((1 << 128) - 1)
        parent = SpanContext(trace_id, k, False, _SAMPLED_RANDOM, state)
        context = trace.set_span_in_context(NonRecordingSpan(parent), Context())
        result = sampler.should_sample(context, trace_id, "SELECT", SpanKind.CLIENT, given)
        if (
            result.decision is not Decision.RECORD_AND_SAMPLE
            or dict(result.attributes or {}) != given
            or result.trace_state != state
        ):
            return False
    return True


def _as_given(attributes: Mapping[Any, Any]) -> bool:
    """Whether the SDK's cleaning would keep ``attributes`` as they are, under no length
    limit: non-empty string keys and plain values (tested over the whole mapping at
    once, in C)."""
    return (
        _PLAIN.issuperset(map(type, attributes.values()))
        and _STR.issuperset(map(type, attributes))
        and "" not in attributes
    )


class LightSpan(trace.Span, ReadableSpan):
    """A recording span made by :class:`LightTracer`; after :meth:`end`, an immutable
    ``ReadableSpan`` handed to the span processors as it is."""

    # What a span holds until something changes it, shared rather than stored per span
    # (each store and container is work on the event loop, and a container one more
    # object for the garbage collector): no status, no end, no events, links or drops.
    _instrumentation_info = None
    _status = _UNSET
    _end_time: int | None = None
    _event_list: Sequence[Event] = ()
    _link_list: Sequence[Link] = ()
    _events = _event_list
    _links = _link_list
    _dropped: tuple[int, int, int] = (0, 0, 0)  # attributes, events, links beyond limits

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        tracer: LightTracer,
        parent_context: Context | None = None,
    ) -> None:
        """A started span: the processors' ``on_start`` hooks have seen it."""
        # ReadableSpan's fields, under the names its properties read
        self._name = name
        self._context = context
        self._span_context = context  # the same, typed as trace.Span says (never None)
        self._parent = parent
        self._kind = kind
        self._resource = tracer._resource
        self._instrumentation_scope = tracer.scope
        self._start_time = time_ns()
        self._tracer = tracer
        # _set's test for what firewatch sets, for a span that holds nothing yet
        if attributes and len(attributes) <= tracer._fast_cap and _as_given(attributes):
            self._store: dict[str, Any] = dict(attributes)
            self._attributes = self._store
        else:
            self._store = {}
            self._attributes = self._store
            if attributes:
                self._set(attributes)
        multi = tracer._multi
        if multi is not None and multi._span_processors is not tracer._seen:
            tracer._refresh()  # a processor was added since
        for on_start in tracer._on_start:
            on_start(self, parent_context=parent_context)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # ReadableSpan: the counts of what the limits dropped
    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]

    def _drop(self, what: int, count: int = 1) -> None:
        """Count ``count`` attributes (0), events (1) or links (2) the limits dropped."""
        dropped = list(self._dropped)
        dropped[what] += count
        self._dropped = (dropped[0], dropped[1], dropped[2])

    # trace.Span
    def get_span_context(self) -> SpanContext:
        return self._span_context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _set(self, attributes: Mapping[str, Any]) -> None:
        """Store ``attributes`` as the SDK's ``BoundedAttributes`` does: values cleaned
        by the SDK's own function (strings cut at the length limit, sequences made
        tuples), empty or non-string keys dropped, a key set again moves last, and
        beyond the count limit the oldest key goes.

        What firewatch itself sets (non-empty string keys, new to the span, plain
        values, within the count limit and under no length limit) is stored as given
        in one C-level update, the tests made over the whole mapping at once: that
        loop was the largest part of a sampled GET's cost on the event loop (780 of
        its ~2,500 opcodes, ``sys.settrace``), and for those attributes it stored
        what it was given."""
        store = self._store
        if (
            len(store) + len(attributes) <= self._tracer._fast_cap
            and _as_given(attributes)
            and store.keys().isdisjoint(attributes)
        ):
            store.update(attributes)
            return
        limits = self._tracer._limits
        cap = limits.max_span_attributes
        if cap == 0:
            self._drop(0, len(attributes))
            return
        max_length = limits.max_span_attribute_length
        for key, value in attributes.items():
            if type(key) is not str or not key:
                if not key or not _is_non_custom_str(key):
                    self._drop(0)
                    continue
                key = str(key)
            if max_length is not None or type(value) not in _PLAIN:
                value = _clean_attribute_value(value, max_length)
            if key in store:
                del store[key]
            elif cap is not None and len(store) >= cap:
                del store[next(iter(store))]
                self._drop(0)
            store[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self._end_time is None:
            self._set(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._end_time is None:
            self._set({key: value})

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's: a status set to OK stays; UNSET is never set."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is not None:
            return
        limits = self._tracer._limits
        bounded = self._frozen(attributes, limits.max_event_attributes)
        events = self._event_list
        if not isinstance(events, list):  # the first: this span's own list
            events = self._event_list = self._events = []
        self._append(events, Event(name, bounded, timestamp), limits.max_events, 1)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        # the SDK's test: a link needs a valid context, or attributes or a trace state
        if self._end_time is not None or not (
            context and (context.is_valid or attributes or context.trace_state)
        ):
            return
        limits = self._tracer._limits
        bounded = self._frozen(attributes, limits.max_link_attributes)
        links = self._link_list
        if not isinstance(links, list):  # the first: this span's own list
            links = self._link_list = self._links = []
        self._append(links, Link(context, bounded), limits.max_links, 2)

    def _frozen(self, attributes: Mapping[str, Any] | None, cap: int | None) -> BoundedAttributes:
        """An event's or link's attributes, as the SDK keeps them: bounded, immutable."""
        max_length = self._tracer._limits.max_attribute_length
        return BoundedAttributes(cap, attributes, immutable=True, max_value_len=max_length)

    def _append(self, items: list[Any], item: Any, cap: int | None, dropped: int) -> None:
        """As the SDK's ``BoundedList``: beyond ``cap`` the oldest item goes."""
        if cap is not None and len(items) >= cap:
            self._drop(dropped)
            if cap == 0:
                return
            del items[0]
        items.append(item)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with the semantic-convention attributes the SDK sets."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, AttributeValue] = {
            "exception.type": qualname if module in {"", "builtins"} else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """As the SDK's: the end time, then the processors' ``_on_ending`` and
        ``on_end`` hooks, and a sampled span goes to the batch processor's queue."""
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time_ns()
        tracer = self._tracer
        multi = tracer._multi
        if multi is not None and multi._span_processors is not tracer._seen:
            tracer._refresh()  # a processor was added since
        for on_ending in tracer._on_ending:
            on_ending(self)
        for on_end in tracer._on_end:
            on_end(self)
        if self._span_context[3] & _SAMPLED_BIT:  # the batch processor's test (trace flags)
            for emit in tracer._emit:
                emit(self)
