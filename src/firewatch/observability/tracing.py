"""OpenTelemetry tracing: set up from the standard ``OTEL_*`` variables, plus span helpers.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER=otlp`` is set, and
off when ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Everything else
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_EXPORTER_OTLP_*`` headers, certificates, timeouts,
``OTEL_BSP_*`` batching, ``OTEL_PROPAGATORS``) is read by the SDK itself, as documented
upstream. Spans leave through the OTLP **gRPC** exporter from a background thread with a
bounded queue: a slow or absent collector drops spans, it never delays a request.

Features call the helpers, never the SDK::

    from firewatch.observability import tracing

    with tracing.ingest_span("alertmanager", alerts=len(payload.alerts)):
        ...
    with tracing.span("firewatch.dedupe", **{"firewatch.alert.fingerprint": fp}):
        ...
    headers: dict[str, str] = {}
    tracing.inject_trace_headers(headers)       # W3C traceparent for an outbound call

With tracing off, the helpers cost next to nothing (the API's no-op tracer).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from typing import Any, Final
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from firewatch.http.methods import KNOWN_METHODS, OTHER_METHOD
from firewatch.observability.redact import scrub_text

__all__ = [
    "DroppedRequest",
    "SpanKind",
    "client_scope",
    "client_span",
    "configure",
    "current_ids",
    "current_traceparent",
    "enabled",
    "fastapi_telemetry",
    "grouping_span",
    "ingest_span",
    "inject_trace_headers",
    "notification_span",
    "scoring_span",
    "server_span",
    "set_error",
    "set_http_status",
    "shutdown",
    "span",
    "sql_span",
]

TRACER_NAME: Final = "firewatch"
#: What the span helpers return: ``with helper(...) as span:``.
SpanScope = AbstractContextManager[Span]

_tracer = trace.get_tracer(TRACER_NAME)  # a proxy: follows the provider set by configure()
_provider: Any = None  # the SDK TracerProvider once configure() enabled tracing
_W3C = TraceContextTextMapPropagator()  # stored parents are W3C, whatever OTEL_PROPAGATORS says


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter and exporter != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: firewatch exports with 'otlp' only")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "grpc"
    if protocol.strip().lower() != "grpc":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: firewatch exports over grpc")
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _provider is not None


def configure(service_version: str) -> bool:
    """Install the SDK tracer provider and instrument redis-py, if wanted (SQL spans
    come from the pool's connection class, see :func:`sql_span`).

    Call once per process (each uvicorn worker calls it from ``app_from_env``).
    Returns whether tracing is on.
    """
    global _provider
    if _provider is not None or not wanted():
        return _provider is not None
    # Imported here: with tracing off, the SDK, gRPC and instrumentations are never loaded.
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from firewatch.observability.otlp import FastOTLPSpanExporter

    attributes: dict[str, AttributeValue] = {"service.version": service_version}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "firewatch"

    # sampler=None: the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG itself.
    provider = TracerProvider(resource=Resource.create(attributes))

    class Scrubbing(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            _scrub_url_attributes(span)

    provider.add_span_processor(Scrubbing())  # first: before the exporter's
    batch = _batch_defaults()  # None: the SDK reads the OTEL_BSP_* variable
    provider.add_span_processor(
        BatchSpanProcessor(
            FastOTLPSpanExporter(),
            max_export_batch_size=batch.get("max_export_batch_size"),
            schedule_delay_millis=batch.get("schedule_delay_millis"),
        )
    )
    trace.set_tracer_provider(provider)
    # redis-py's calls (everything but the pipelined auth script, see client_span);
    # PostgreSQL statements get their spans from sql_span (runtime/database.py).
    RedisInstrumentor().instrument(tracer_provider=provider)
    install(provider, service_version)
    _provider = provider
    return True


def install(provider: Any, service_version: str | None = None) -> None:
    """Make firewatch's server, SQL and Redis-script spans with ``provider``'s sampler,
    ids, resource and processors (as :class:`~firewatch.observability.spans.LightSpan`,
    see that module), and continue the ``traceparent`` of the global propagator's
    fields. configure() calls it; tests call it with a provider of their own."""
    from firewatch.observability.spans import LightSpan, LightTracer

    global _server_tracer, _sql_tracer, _client_tracer, _light_span, propagation_fields
    _light_span = LightSpan
    _server_tracer = LightTracer(provider, "firewatch.http", service_version)
    _sql_tracer = LightTracer(provider, SQL_TRACER_NAME, service_version)
    _client_tracer = LightTracer(provider, TRACER_NAME, service_version)
    propagation_fields = frozenset(
        f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields
    )


#: Export batches of at most 256 spans, at least every second, unless the standard
#: OTEL_BSP_* variables say otherwise (the SDK's defaults: 512 spans, 5 s). Encoding a
#: batch is Python work on the export thread, which holds the interpreter lock against
#: the event loop while it runs: with the SDK's encoder (~3x slower than
#: observability/otlp.py's) 512-span batches made GET p99 25-40 ms at 10% sampling,
#: and 64 spans every 200 ms 14-18 ms. With firewatch's encoder (~9 us a span) a
#: batch of 256 holds it ~2.3 ms, and the gRPC call, ~1 ms of CPU per batch whatever
#: its size, is paid a quarter as often: in `make bench BENCH=observability`
#: (2026-12-06, 5 rounds each) one sampled GET cost +104 us of server CPU against +136
#: with 64 / 200 ms, observed GET p99 7.80 ms against 7.72 (plain 5.93 and 5.84).
BATCH_DEFAULTS: Final = {
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("max_export_batch_size", 256),
    "OTEL_BSP_SCHEDULE_DELAY": ("schedule_delay_millis", 1000),
}


def _batch_defaults(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """BatchSpanProcessor arguments for the OTEL_BSP_* variables that are not set."""
    env = os.environ if environ is None else environ
    return {arg: value for name, (arg, value) in BATCH_DEFAULTS.items() if not env.get(name)}


_URL_KEYS: Final = frozenset({"url.path", "url.query", "url.full", "http.target", "http.url"})


def _scrub_url_attributes(span: Any) -> None:
    """URL attributes lose their secrets as a span starts, before any exporter sees it,
    whichever instrumentation set them (run by a span processor, see configure()).

    Paths are raw (``/nowhere/fw_<key>`` must not leave) and FastAPI's ``url.query`` is
    percent-encoded, so each value is scrubbed decoded; a value with a secret is
    replaced by its scrubbed decoded form.
    """
    # A light span's attributes read directly (its ``attributes`` property makes a
    # read-only proxy); the SQL and Redis spans have no URL key: one set test.
    attributes: Mapping[str, Any]
    if type(span) is _light_span:
        attributes = span._store
    else:
        attributes = getattr(span, "attributes", None) or {}
    if _URL_KEYS.isdisjoint(attributes):
        return
    # One pass over the span's few keys: asking the SDK's attribute mapping for each
    # absent URL key raised and caught a KeyError per key (3x the cost, every span).
    for key in _URL_KEYS.intersection(attributes):
        value = attributes[key]
        if isinstance(value, str):
            decoded = unquote_plus(value)
            cleaned = scrub_text(decoded)
            if cleaned != decoded:
                span.set_attribute(key, cleaned)


_server_tracer: Any = None  # install(): the LightTracer of the HTTP server spans
_light_span: Any = None  # install(): spans.LightSpan (the SDK is not imported before)
_client_tracer: Any = None  # install(): the LightTracer of client_span's spans
_ROOT: Final = otel_context.Context()  # the parent of a request that brings none
#: The SDK's random id generator is ``random.getrandbits`` (module ``random``'s shared
#: generator, reseeded in forked children); ids, not secrets (W3C Trace Context).
_getrandbits: Final = random.getrandbits
_DROPPED: Final = TraceFlags(TraceFlags.RANDOM_TRACE_ID)  # not sampled, random trace id
#: The request headers that carry trace context (install(): the global propagator's
#: fields, lowercase: traceparent, tracestate, ...); empty with tracing off.
propagation_fields: frozenset[bytes] = frozenset()


def _runtime_context_var() -> ContextVar[otel_context.Context] | None:
    """The ``ContextVar`` behind OTel's current context, when the runtime context is
    OTel's default (``contextvars``, unless ``OTEL_PYTHON_CONTEXT`` names another):
    then ``attach``/``detach``/``get_current`` are ``set``/``reset``/``get`` on it, one
    C call each rather than two or three Python calls around it."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_context_var: Final = _runtime_context_var()
#: The current OTel context: one C call when the runtime context is the default.
_get_context: Final[Callable[[], otel_context.Context]] = (
    otel_context.get_current if _context_var is None else _context_var.get
)


def _attach(context: otel_context.Context) -> Token[otel_context.Context]:
    """``otel_context.attach``, directly on the variable when there is one."""
    if _context_var is not None:
        return _context_var.set(context)
    return otel_context.attach(context)


def _detach(token: Token[otel_context.Context]) -> None:
    """``otel_context.detach(token)``, directly on the variable when there is one; a
    token of another context goes on to ``detach``, which logs it and raises nothing
    (ending a request never breaks it)."""
    if _context_var is not None:
        try:
            _context_var.reset(token)
            return
        except ValueError:
            pass
    otel_context.detach(token)


class ServerSpan:
    """The SERVER span of one HTTP request, current until :meth:`end` (see the request
    middleware, observability/middleware.py); :func:`server_span` starts it.

    firewatch's own rather than FastAPI's native telemetry: with a parent-based
    sampler at 10%, 9 requests in 10 are unsampled and FastAPI's layer still built
    their attributes, a telemetry object, three context attachments and walked the
    middleware stack (~90 us of a ~600 us GET incident, ``python -m bench.inprocess``).
    Here an unsampled request costs one sampler decision and one context attachment
    (a new trace's: :class:`DroppedRequest`), and its SQL and Redis client spans are
    suppressed in that same context (under a parent-based sampler they could never
    be exported; the asyncpg and redis instrumentations would still build, attach and
    fill a non-recording span per statement). The span comes from a
    :class:`~firewatch.observability.spans.LightTracer` (the provider's sampler, ids
    and processors, a light span object). A sampled span gets the HTTP
    semantic-convention attributes, is renamed ``{method} {route}`` once routing
    picked the route, and its URL attributes are scrubbed by the span processor as
    it starts (see configure()). The incoming W3C ``traceparent`` (whatever
    ``OTEL_PROPAGATORS`` lists) is continued; log lines written while the span is
    current carry its ids.
    """

    __slots__ = ("_name", "_scope", "_span", "_token")

    def __init__(self, scope: MutableMapping[str, Any], trace_id: int = 0) -> None:
        """``trace_id``: a new trace's id that the sampler's rule kept (the request
        brings no trace context: its headers are not read again)."""
        carrier: dict[str, str] = {}
        if not trace_id:
            for name, value in scope.get("headers", ()):
                if name in propagation_fields:
                    carrier[name.decode("latin-1")] = value.decode("latin-1")
        method = str(scope.get("method", ""))
        known = method in KNOWN_METHODS
        self._name = method if known else "HTTP"  # semantic conventions: span name
        self._scope = scope
        tracer = _server_tracer
        span: Span | None
        if carrier:
            parent = propagate.extract(carrier)
            span = tracer.start_span(
                self._name, parent, SpanKind.SERVER, self._attributes(method, known)
            )
        else:
            parent = _ROOT
            span = None
            if not trace_id:  # (0, None): ask the sampler; (id, None): kept; else dropped
                trace_id, span = tracer.dropped_root()
            if span is None:  # a new trace: no parent to look up in the (empty) context
                attributes = self._attributes(method, known)
                span = tracer.start_span(
                    self._name, parent, SpanKind.SERVER, attributes, trace_id, None
                )
        self._span: Span = span
        if span.is_recording():
            current = trace.set_span_in_context(span, parent)
        elif parent is _ROOT:  # a new trace, not sampled (a sampler without a known rule)
            current = otel_context.Context({_SPAN_KEY: span, _SUPPRESS_INSTRUMENTATION_KEY: True})
        else:  # no client span can be made in an unsampled request
            current = otel_context.set_value(
                _SUPPRESS_INSTRUMENTATION_KEY, True, trace.set_span_in_context(span, parent)
            )
        self._token = _attach(current)

    def _attributes(self, method: str, known: bool) -> dict[str, AttributeValue]:
        """The request's attributes the sampler is shown (built only when it is asked)."""
        scope = self._scope
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method if known else OTHER_METHOD,
            "url.scheme": str(scope.get("scheme", "http")),
            "url.path": str(scope.get("path", "")),
        }
        if scope.get("query_string"):
            attributes["url.query"] = bytes(scope["query_string"]).decode("latin-1")
        return attributes

    def end(self, *, route: str | None, status: int, error: BaseException | None) -> None:
        """Close the span (and its context) after the response, or after ``error``."""
        span = self._span
        if not span.is_recording():  # nothing to record, nothing to end
            _detach(self._token)
            return
        try:
            scope = self._scope
            # One set_attributes call: one pass over the attributes, not one per key.
            attributes: dict[str, AttributeValue] = {"http.response.status_code": status}
            if route is not None:
                span.update_name(f"{self._name} {route}")
                attributes["http.route"] = route
            version = scope.get("http_version")
            if version:
                attributes["network.protocol.version"] = str(version)
            server = scope.get("server")
            if server:
                attributes["server.address"] = str(server[0])
                if server[1] is not None:
                    attributes["server.port"] = int(server[1])
            if error is not None:
                span.record_exception(error)
                attributes["error.type"] = type(error).__qualname__
            elif status >= 500:
                attributes["error.type"] = str(status)
            span.set_attributes(attributes)
            if "error.type" in attributes:
                span.set_status(Status(StatusCode.ERROR))
        finally:
            _detach(self._token)
            span.end()


class DroppedRequest(NonRecordingSpan):
    """A request that starts a trace its sampler drops (9 in 10 at 10%): at once its
    own non-recording span, current with client spans suppressed until
    :meth:`end`, and what the middleware ends.

    Why one object: it is what an unsampled request costs. The SDK would make a
    ``SpanContext`` (a validating constructor), a ``NonRecordingSpan`` and, here, an
    object to end; this holds the two ids, builds the ``SpanContext`` only if asked
    (``get_span_context``: propagation, a child span; the log line reads the ids
    directly, :func:`current_ids`) and is the span OTel code finds in the context.
    Like any non-recording span it ignores OTel's ``end()``; the middleware's
    ``end(route=..., status=..., error=...)`` restores the context.
    """

    __slots__ = ("_lazy", "_token", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int) -> None:
        # not NonRecordingSpan.__init__, which takes the SpanContext made lazily here
        self.trace_id = trace_id
        self.span_id = span_id
        self._lazy: SpanContext | None = None
        self._token = _attach(
            otel_context.Context({_SPAN_KEY: self, _SUPPRESS_INSTRUMENTATION_KEY: True})
        )

    def get_span_context(self) -> SpanContext:
        context = self._lazy
        if context is None:
            context = self._lazy = SpanContext(self.trace_id, self.span_id, False, _DROPPED)
        return context

    def end(
        self,
        end_time: int | None = None,
        *,
        route: str | None = None,
        status: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        """The middleware's end of the request (``status`` given): the context it
        began in is current again. OTel's ``Span.end(end_time)``: nothing, as for any
        non-recording span."""
        if status is not None:
            _detach(self._token)

    def __repr__(self) -> str:
        return f"DroppedRequest({self.get_span_context()!r})"


def server_span(
    scope: MutableMapping[str, Any], carries_context: bool | None = None
) -> ServerSpan | DroppedRequest | None:
    """Start the SERVER span of an HTTP request, or None when tracing is off.

    A request that brings no propagation header starts a trace: where the sampler's
    answer is known (``LightTracer.drop_rule``: the ``OTEL_TRACES_SAMPLER`` samplers,
    the SDK's random ids) its ids are drawn here as that generator draws them, and a
    dropped one is a :class:`DroppedRequest`. ``carries_context``: whether one of the
    headers is in :data:`propagation_fields`, if the caller looked already (the
    request middleware, in its one pass over the headers); None: look here."""
    tracer = _server_tracer
    if tracer is None:
        return None
    rule = tracer.drop_rule
    if rule is None:
        return ServerSpan(scope)
    if carries_context is None:
        fields = propagation_fields
        carries_context = any(name in fields for name, _value in scope.get("headers", ()))
    if carries_context:
        return ServerSpan(scope)
    trace_id = _getrandbits(128) or tracer.new_trace_id()
    if trace_id & rule[0] < rule[1]:
        return ServerSpan(scope, trace_id)
    # (a drop rule means the SDK's random ids: LightTracer.new_span_id's draw, inlined)
    return DroppedRequest(trace_id, _getrandbits(64) or tracer.new_span_id())


def untraced() -> AbstractContextManager[object]:
    """No SQL or Redis client spans inside the block (background polling: a worker
    asking every second whether there is work would otherwise export a one-span
    trace per question). Spans started with the helpers here are unaffected."""
    if _provider is None:
        return nullcontext()
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def fastapi_telemetry() -> TelemetryConfig:
    """``FastAPI(telemetry=...)``: FastAPI's own OpenTelemetry layer, off.

    The server spans are firewatch's (:class:`ServerSpan`, started by the request
    middleware), FastAPI's OTel metrics and logs would duplicate Prometheus and
    structlog. Earlier versions used FastAPI's native spans (and before them the
    contrib ``FastAPIInstrumentor``, which named every span by walking all routes);
    both cost more per unsampled request than :class:`ServerSpan` does.
    """
    return {
        "tracing": False,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
    }


def shutdown(timeout_millis: int = 5000) -> None:
    """Flush what is queued (bounded wait) at process exit."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# ------------------------------------------------------------------ helpers to call


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    parent: str | None = None,
    **attrs: AttributeValue,
) -> Iterator[Span]:
    """A child span of the current one, current for the ``with`` block.

    Attributes come from ``attributes`` (for dotted semantic-convention names such as
    ``{"http.request.method": "POST"}``) and keyword arguments (used verbatim). An
    exception escaping the block is recorded on the span and sets its status to ERROR.
    ``parent``, a W3C ``traceparent`` saved earlier (:func:`current_traceparent`),
    makes the span a child of that span instead, continuing its trace: work done
    later, elsewhere (a queued notification) joins the trace of what caused it.
    """
    merged: dict[str, AttributeValue] = dict(attributes or {})
    merged.update(attrs)
    context = _W3C.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=merged
    ) as current:
        yield current


_NO_SPAN = nullcontext()


def _recording_parent(tracer: Any) -> tuple[otel_context.Context, SpanContext] | None:
    """The current context and its span's context, if ``tracer`` is set (tracing on)
    and a client span made here would be exported: inside a sampled span, and not
    where client spans are suppressed (an unsampled request, :func:`untraced`); else
    None. Asked once per statement and Redis call, so it reads the context once,
    directly (see :func:`_current_span_context`), and hands the parent on: the span
    needs no second look-up (:func:`_client`)."""
    if tracer is None:
        return None
    current = _get_context()
    if current.get(_SUPPRESS_INSTRUMENTATION_KEY):
        return None
    span: Any = current.get(_SPAN_KEY)  # a Span: only set_span_in_context writes it
    if span is None or not span.is_recording():
        return None
    return current, span.get_span_context()


class _ClientScope:
    """``with``-block of one CLIENT span that is never made current: nothing runs
    inside a backend call that could start a child span, and not attaching it saves
    the context switch in and out (the SDK's ``start_as_current_span`` also wraps the
    block in two generator-based context managers). An exception leaving the block
    marks the span failed (``error.type``), as the contrib instrumentations do; a
    cancellation (``CancelledError``, not an ``Exception``) does not."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any
    ) -> None:
        if kind is not None and issubclass(kind, Exception):  # not a cancellation
            set_error(self._span, kind.__qualname__)
        self._span.end()


def client_span(
    name: str, attributes: Mapping[str, AttributeValue]
) -> AbstractContextManager[object]:
    """A CLIENT span around a call to a backend that no instrumentation sees (the
    pipelined Redis connection, runtime/redis_mux.py), made as the instrumentations
    make theirs: only inside a sampled span, never where they are suppressed (an
    unsampled request, :func:`untraced`). Otherwise a shared no-op: this is on the
    path of every authenticated request."""
    span = client_scope(name, attributes)
    return _NO_SPAN if span is None else _ClientScope(span)


def client_scope(name: str, attributes: Mapping[str, AttributeValue]) -> Span | None:
    """:func:`client_span`'s span, started and not current, or None where none is
    made; the caller ends it (and marks it failed, :func:`set_error`)."""
    parent = _recording_parent(_client_tracer)
    return None if parent is None else _client(_client_tracer, parent, name, attributes)


def _client(
    tracer: Any,
    parent: tuple[otel_context.Context, SpanContext],
    name: str,
    attributes: Mapping[str, AttributeValue],
) -> Span:
    """The CLIENT span of one backend call, child of ``parent`` (from
    :func:`_recording_parent`), started and not made current."""
    current, context = parent
    span: Span = tracer.start_span(name, current, SpanKind.CLIENT, attributes, parent=context)
    return span


SQL_TRACER_NAME: Final = "firewatch.asyncpg"
_sql_tracer: Any = None  # install(): the LightTracer of the PostgreSQL CLIENT spans
_FIRST_KEYWORD = re.compile(r"\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)
_statement_names: dict[str, str] = {}
_STATEMENT_NAMES_MAX: Final = 4096  # stores' SQL is fixed text: a few hundred at most


def statement_name(query: str) -> str:
    """A SQL span's name: the statement's first keyword (``SELECT``, ``WITH``,
    ``BEGIN`` of asyncpg's ``BEGIN;``), after any leading comment, as the contrib
    asyncpg instrumentation named its spans. Remembered per statement text (the
    stores' SQL is a fixed set)."""
    name = _statement_names.get(query)
    if name is None:
        keyword = _FIRST_KEYWORD.match(query)
        name = keyword[1].upper() if keyword else "postgresql"
        if len(_statement_names) < _STATEMENT_NAMES_MAX:
            _statement_names[query] = name
    return name


def sql_span(
    query: str, connection_attributes: Callable[[], Mapping[str, AttributeValue]]
) -> _ClientScope | None:
    """The CLIENT span of one PostgreSQL statement (``runtime/database.py``'s
    connection class calls it for every statement), or None where none is made:
    tracing off, no sampled span current, or client spans suppressed.

    firewatch's own rather than the contrib asyncpg instrumentation, which wrapped
    every statement, sampled or not, in a ``wrapt`` proxy that asked the context
    whether instrumentation was on, and in a sampled request stripped comments with a
    regex, rebuilt the connection's attributes from its parameters and entered two
    generator-based context managers per statement. Here the connection's attributes
    are built once per connection (``connection_attributes``, called only for a
    span), the name once per statement text, and the span is not made current
    (:class:`_ClientScope`). It carries the same attributes under the same names
    (``db.system``, ``db.name``, ``db.user``, ``net.peer.*``, ``net.transport``,
    ``db.statement``: the statement with its ``$n`` placeholders, never values).
    Measured: a sampled GET incident went from 663k to 525k instructions on the
    main thread (``python -m bench.inprocess --instructions``, ADR-007 eighth note).
    """
    parent = _recording_parent(_sql_tracer)
    if parent is None:
        return None
    attributes = dict(connection_attributes())
    attributes["db.statement"] = query
    return _ClientScope(_client(_sql_tracer, parent, statement_name(query), attributes))


def ingest_span(source: str, *, alerts: int) -> SpanScope:
    """Span around ingesting one delivery of ``alerts`` alerts from ``source``
    (``alertmanager``, ``webhook``, ``detection``)."""
    return span(
        "firewatch.ingest",
        attributes={"firewatch.alert.source": source, "firewatch.alert.count": alerts},
    )


def grouping_span(*, alerts: int, group_key: str | None = None) -> SpanScope:
    """Span around grouping alerts into incidents (find-or-open by group key)."""
    attributes: dict[str, AttributeValue] = {"firewatch.alert.count": alerts}
    if group_key is not None:
        attributes["firewatch.group.key"] = group_key[:256]
    return span("firewatch.grouping", attributes=attributes)


def scoring_span(stream: str, *, model_version: str | None = None, points: int = 1) -> SpanScope:
    """Span around scoring ``points`` values of metric stream ``stream``."""
    attributes: dict[str, AttributeValue] = {
        "firewatch.detection.stream": stream,
        "firewatch.detection.points": points,
    }
    if model_version is not None:
        attributes["firewatch.detection.model_version"] = model_version
    return span("firewatch.scoring", attributes=attributes)


def _safe_url(url: str) -> tuple[str, str | None, int | None]:
    """``url`` without credentials or query (which may carry tokens), host, port."""
    parts = urlsplit(url)
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), host, port


def notification_span(
    channel: str,
    url: str,
    *,
    method: str = "POST",
    parent: str | None = None,
    with_path: bool = True,
) -> SpanScope:
    """CLIENT span around one notification delivery attempt (HTTP semantic conventions).

    Inside the block, call :func:`inject_trace_headers` on the outbound headers so the
    receiver continues the trace, and :func:`set_http_status` with the response code.
    The URL is recorded without credentials or query string, and without its path
    when ``with_path`` is False (a Slack incoming-webhook path is itself the secret).
    ``parent`` is the ``traceparent`` of the change that queued the notification
    (see :func:`span`).
    """
    full, host, port = _safe_url(url)
    if not with_path:
        full = urlunsplit(urlsplit(full)._replace(path=""))
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method.upper(),
        "url.full": full,
        "firewatch.notification.channel": channel,
    }
    if host:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    return span(method.upper(), kind=SpanKind.CLIENT, attributes=attributes, parent=parent)


def set_http_status(current: Span, status_code: int) -> None:
    """Record an HTTP response code on a CLIENT span (>= 400 marks it as an error)."""
    current.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        current.set_status(Status(StatusCode.ERROR))


def set_error(current: Span, error_type: str) -> None:
    """Mark a span failed by an error that was handled (``error.type`` convention)."""
    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR))


def inject_trace_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add W3C ``traceparent`` (and ``tracestate``/``baggage``) of the current span to
    ``headers`` (a dict or ``httpx.Headers``) and return it. No-op without a span."""
    propagate.inject(headers)
    return headers


def _current_span_context() -> SpanContext | None:
    """The active span's context if it is valid: the context read directly, not
    through ``trace.get_current_span()`` (its ABC ``isinstance`` check was a third of
    the trace ids' cost in every log line; only ``set_span_in_context`` writes this
    key, and it writes spans)."""
    span: Any = _get_context().get(_SPAN_KEY)  # a Span, or None
    if span is None:
        return None
    ctx = span.get_span_context()
    return ctx if ctx.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, or None (no span, tracing off).

    Stored beside queued work so that whoever runs it later continues this trace.
    """
    ctx = _current_span_context()
    if ctx is None:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span as lowercase hex, or None. (Every log
    line asks: :func:`_current_span_context` inlined.)"""
    span: Any = _get_context().get(_SPAN_KEY)  # a Span, or None
    if span is None:
        return None
    if span.__class__ is DroppedRequest:  # an unsampled request: valid ids, no context made
        trace_id, span_id = span.trace_id, span.span_id
    else:
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return None
        trace_id, span_id = ctx.trace_id, ctx.span_id
    # (to_bytes().hex(): half the instructions of format(..., "032x"))
    return trace_id.to_bytes(16, "big").hex(), span_id.to_bytes(8, "big").hex()
