"""OTLP trace export: the SDK's gRPC exporter, with spans encoded to protobuf bytes here.

Why: the exporter's own encoder (``opentelemetry-exporter-otlp-proto-common``) builds one
protobuf object per span, attribute and value through Python calls, on the export
thread, which holds the interpreter lock against the event loop meanwhile; a sampled
GET incident makes three spans. ``make bench BENCH=observability`` measures both
encoders on the same GET-shaped spans ("OTLP encoding": 31.7 vs 10.2 us a span in the
run of 2026-11-27 16:39 UTC, ADR-007).

:func:`encode_spans` writes the same ``ExportTraceServiceRequest`` straight in the
protobuf wire format (the format is fixed by ``opentelemetry-proto``; encoding it is a
few byte concatenations per field), caching the encoded form of the attributes that
repeat from span to span (``db.system``, a statement, a route) and of the resource and
instrumentation scopes. The request then goes through the SDK's exporter unchanged:
parsed into the generated message class by protobuf's C parser (``FromString``), sent
with the exporter's retries, timeouts, headers, TLS and compression. Tests compare every
encoding against the SDK's encoder over generated spans: the same request, byte for
byte once both are serialized deterministically.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status

from firewatch.observability.spans import UNSET_STATUS, LightSpan

log = logging.getLogger(__name__)

__all__ = ["FastOTLPSpanExporter", "encode_spans", "encode_spans_bytes"]

K = TypeVar("K")
T = TypeVar("T")

_SMALL: Final = [bytes((i,)) for i in range(0x80)]
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1

# Span.kind by SpanKind's value: the SDK's SpanKind (INTERNAL=0 ...) is the protobuf
# enum minus one.
_KIND: Final = {kind.value: b"\x30" + _SMALL[kind.value + 1] for kind in SpanKind}
# SpanFlags: the parent's "is remote" bit is known (HAS_IS_REMOTE) / set (IS_REMOTE).
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
_SPAN_FLAGS_TAG: Final = b"\x85\x01"  # Span.flags: field 16, fixed32
_LINK_FLAGS_TAG: Final = b"\x35"  # Link.flags: field 6, fixed32


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's payload, with the SDK encoder's type tests, in its order."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError("integer out of int64 range")
        return b"\x18" + _varint(value if value >= 0 else value + (1 << 64))
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(
            b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        )
    raise TypeError(f"invalid type {type(value).__name__}")  # never the value: a log line


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode("utf-8")) + _field(b"\x12", _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """Repeated ``KeyValue`` fields; a value that cannot be encoded is left out and
    logged, as the SDK's encoder does."""
    if not attributes:
        return []
    out = []
    for key, value in attributes.items():
        try:
            out.append(_field(tag, _key_value(key, value)))
        except Exception as exc:  # the SDK's encoder logs and skips such an attribute
            log.warning("failed to encode span attribute %r: %s", key, exc)
    return out


_SCALARS: Final = frozenset({str, int, bool, float})
_ATTRIBUTE_CACHE_MAX: Final = 4096
#: Longer strings are encoded every time: a client chooses a URL path, and 4096 long
#: ones must not pin megabytes (SQL text up to this length is still cached).
_CACHED_STR_MAX: Final = 1024
_span_attribute_cache: dict[tuple[str, type, Any], bytes] = {}


def _span_attributes(attributes: Mapping[str, Any] | None) -> list[bytes]:
    """A span's attributes (field 9); scalar ones are encoded once and then reused.

    The key holds the value's type: ``True == 1 == 1.0`` would otherwise share an entry.
    Cleared when full: high-cardinality values (a URL path) churn through it, the
    repeating ones come straight back. At most 4096 entries of at most ~2 KiB each.
    """
    if not attributes:
        return []
    cache = _span_attribute_cache
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if kind in _SCALARS and (kind is not str or len(value) <= _CACHED_STR_MAX):
            entry = (key, kind, value)
            encoded = cache.get(entry)
            if encoded is None:
                try:
                    encoded = _field(b"\x4a", _key_value(key, value))
                except Exception as exc:
                    log.warning("failed to encode span attribute %r: %s", key, exc)
                    continue
                if len(cache) >= _ATTRIBUTE_CACHE_MAX:
                    cache.clear()
                cache[entry] = encoded
            out.append(encoded)
        else:
            try:
                out.append(_field(b"\x4a", _key_value(key, value)))
            except Exception as exc:
                log.warning("failed to encode span attribute %r: %s", key, exc)
    return out


def _flags(tag: bytes, remote: bool) -> bytes:
    """A span's or link's ``flags``: whether its parent / linked context is remote."""
    return tag + _pack_fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if remote else 0))


_LOCAL_PARENT_FLAGS: Final = _flags(_SPAN_FLAGS_TAG, False)
_REMOTE_PARENT_FLAGS: Final = _flags(_SPAN_FLAGS_TAG, True)


def _span(span: ReadableSpan) -> bytes:
    """One ``Span`` message's payload.

    A light span (observability/spans.py: the server, SQL and Redis-script spans,
    nearly all that firewatch exports) is read from its fields, one dict lookup each,
    rather than through ``ReadableSpan``'s properties, a Python call each (and a
    read-only proxy for the attributes): 58k instructions a span before, on the
    export thread, which holds the interpreter lock against the event loop."""
    if type(span) is LightSpan:
        dropped = span._dropped
        return _encode_span(
            span._span_context,
            span._parent,
            span._name,
            span._kind,
            span._start_time,
            span._end_time,
            span._store,
            dropped[0],
            span._event_list,
            dropped[1],
            span._link_list,
            dropped[2],
            span._status,
        )
    ctx = span.get_span_context()
    if ctx is None:
        raise ValueError("a span without a context cannot be exported")
    return _encode_span(
        ctx,
        span.parent,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.attributes,
        span.dropped_attributes,
        span.events,
        span.dropped_events,
        span.links,
        span.dropped_links,
        span.status,
    )


def _encode_span(
    ctx: SpanContext,
    parent: SpanContext | None,
    name: str,
    kind: SpanKind,
    start_time: int | None,
    end_time: int | None,
    attributes: Mapping[str, Any] | None,
    dropped_attributes: int,
    events: Sequence[Event],
    dropped_events: int,
    links: Sequence[Link],
    dropped_links: int,
    status: Status | None,
) -> bytes:
    # SpanContext is a tuple (trace_id, span_id, is_remote, flags, state, is_valid):
    # unpacked in C rather than through a property per field (6 fields or it raises)
    trace_id, span_id, _remote, _flags_of, state, _valid = ctx
    parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
    if state:
        text = ",".join([f"{key}={value}" for key, value in state.items()])
        if text:
            parts.append(_field(b"\x1a", text.encode("utf-8")))
    remote_parent = False
    if parent:
        _, parent_id, remote_parent, *_rest = parent
        parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
    if name:
        parts.append(_field(b"\x2a", name.encode("utf-8")))
    parts.append(_KIND[kind._value_])  # the member's value: Enum.__hash__ is Python
    if start_time:
        parts += (b"\x39", _pack_fixed64(start_time))
    if end_time:
        parts += (b"\x41", _pack_fixed64(end_time))
    parts += _span_attributes(attributes)
    if dropped_attributes:
        parts += (b"\x50", _varint(dropped_attributes))
    for event in events:
        event_parts: list[bytes] = []
        if event.timestamp:
            event_parts += (b"\x09", _pack_fixed64(event.timestamp))
        if event.name:
            event_parts.append(_field(b"\x12", event.name.encode("utf-8")))
        event_parts += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            event_parts += (b"\x20", _varint(event.dropped_attributes))
        parts.append(_field(b"\x5a", b"".join(event_parts)))
    if dropped_events:
        parts += (b"\x60", _varint(dropped_events))
    for link in links:
        link_parts = [
            b"\x0a\x10",
            link.context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            link.context.span_id.to_bytes(8, "big"),
            *_attributes(b"\x22", link.attributes),
        ]
        if link.dropped_attributes:
            link_parts += (b"\x28", _varint(link.dropped_attributes))
        link_parts.append(_flags(_LINK_FLAGS_TAG, link.context.is_remote))
        parts.append(_field(b"\x6a", b"".join(link_parts)))
    if dropped_links:
        parts += (b"\x70", _varint(dropped_links))
    if status is UNSET_STATUS:  # a light span's default: an empty Status message
        parts.append(b"\x7a\x00")
    elif status is not None:  # the SDK's encoder leaves the field out for a span without
        status_parts: list[bytes] = []
        if status.description:
            status_parts.append(_field(b"\x12", status.description.encode("utf-8")))
        if status.status_code.value:
            status_parts += (b"\x18", _varint(status.status_code.value))
        parts.append(_field(b"\x7a", b"".join(status_parts)))
    parts.append(_REMOTE_PARENT_FLAGS if remote_parent else _LOCAL_PARENT_FLAGS)
    return b"".join(parts)


def _resource(resource: Resource) -> bytes:
    return b"".join(_attributes(b"\x0a", resource.attributes))


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = []
    if scope.name:
        parts.append(_field(b"\x0a", scope.name.encode("utf-8")))
    if scope.version:
        parts.append(_field(b"\x12", scope.version.encode("utf-8")))
    parts += _attributes(b"\x1a", scope.attributes)
    return b"".join(parts)


class _Memo:
    """Encodings of the few long-lived resource and scope objects, by identity (the
    object is kept, so its id cannot be reused while the entry lives)."""

    def __init__(self, encode: Callable[[Any], bytes], limit: int = 256) -> None:
        self._encode = encode
        self._limit = limit
        self._entries: dict[int, tuple[object, bytes]] = {}

    def __call__(self, obj: object) -> bytes:
        hit = self._entries.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        encoded = self._encode(obj)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[id(obj)] = (obj, encoded)
        return encoded


_resource_memo = _Memo(_resource)
_scope_memo = _Memo(_scope)


def _group(items: Iterable[tuple[K, T]]) -> list[tuple[K, list[T]]]:
    """Group ``(key, item)`` pairs by key *equality*, in order of first appearance (as
    the SDK's encoder groups spans by resource and scope), comparing objects by identity
    first: equality of a Resource is a JSON dump of its attributes."""
    groups: list[tuple[K, list[T]]] = []
    by_id: dict[int, list[T]] = {}
    for key, item in items:
        members = by_id.get(id(key))
        if members is None:
            for other, other_members in groups:
                if other == key:
                    members = other_members
                    break
            else:
                members = []
                groups.append((key, members))
            by_id[id(key)] = members
        members.append(item)
    return groups


def encode_spans_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of ``spans``."""
    out = []
    # (a light span's resource and scope read from its fields, as in _span)
    keyed = ((span._resource if type(span) is LightSpan else span.resource, span) for span in spans)
    for resource, resource_spans in _group(keyed):
        parts = [_field(b"\x0a", _resource_memo(resource))]
        scoped = (
            (
                (
                    span._instrumentation_scope
                    if type(span) is LightSpan
                    else span.instrumentation_scope
                )
                or None,
                span,
            )
            for span in resource_spans
        )
        for scope, scope_spans in _group(scoped):
            scope_parts = [_field(b"\x0a", _scope_memo(scope))]
            scope_parts += [_field(b"\x12", _span(span)) for span in scope_spans]
            if scope is not None and scope.schema_url:
                scope_parts.append(_field(b"\x1a", scope.schema_url.encode("utf-8")))
            parts.append(_field(b"\x12", b"".join(scope_parts)))
        if resource.schema_url:
            parts.append(_field(b"\x1a", resource.schema_url.encode("utf-8")))
        out.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(out)


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """What the SDK's ``encode_spans`` returns, built from :func:`encode_spans_bytes`."""
    return ExportTraceServiceRequest.FromString(encode_spans_bytes(spans))


_EXPORT: Final = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].methods_by_name[
    "Export"
]
#: The gRPC method of the collector's TraceService/Export (from the proto's descriptor).
EXPORT_METHOD: Final = f"/{_EXPORT.containing_service.full_name}/{_EXPORT.name}"


def _as_is(request: bytes) -> bytes:
    return request


class _EncodedTraceServiceStub:
    """``TraceServiceStub`` whose ``Export`` takes the request already serialized
    (:func:`encode_spans_bytes`) and sends those bytes as they are; the response is
    parsed as the generated stub parses it."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=_as_is,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter with :func:`encode_spans_bytes` as its
    encoder; configuration (``OTEL_EXPORTER_OTLP_*``), the channel (TLS, compression,
    reconnection), retries and sending are the SDK's. Its stub is given the encoded
    bytes: parsing them into the generated message only for gRPC to serialize it
    again cost ~10k instructions a span on the export thread."""

    def _initialize_channel_and_stub(self) -> None:
        """The SDK's channel (also when it reconnects after UNAVAILABLE), this stub."""
        initialize: Callable[[], None] = super()._initialize_channel_and_stub  # unannotated
        initialize()
        # through __dict__: the SDK's attributes are inferred as None-typed upstream
        fields = self.__dict__
        fields["_client"] = _EncodedTraceServiceStub(fields["_channel"])

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        """The serialized request (bytes, for the stub above; typed ``Any`` because the
        SDK declares the message class it would otherwise build)."""
        return encode_spans_bytes(data)
