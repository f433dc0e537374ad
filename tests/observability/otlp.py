"""A real OTLP/gRPC trace receiver: the collector's TraceService, served by grpcio.

It implements ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` with the
messages of ``opentelemetry-proto``, so the exporter under test talks to it exactly as
it would to an OpenTelemetry Collector, over HTTP/2 on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    service_name: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]

    @classmethod
    def from_proto(cls, service_name: str, span: Span) -> ReceivedSpan:
        return cls(
            service_name=service_name,
            name=span.name,
            kind=span.kind,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            attributes={a.key: _plain(a.value) for a in span.attributes},
        )


class OtlpReceiver:
    """Collects every span exported to it; ``endpoint`` is what OTEL_EXPORTER_OTLP_ENDPOINT
    should be set to."""

    def __init__(self, *, keep: bool = True) -> None:
        """``keep=False`` only counts spans (for load tests: no memory growth)."""
        self.keep = keep
        self.count = 0
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=ExportTraceServiceRequest.FromString,
                    response_serializer=ExportTraceServiceResponse.SerializeToString,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _export(
        self, request: ExportTraceServiceRequest, _context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        if not self.keep:
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.count += n
            return ExportTraceServiceResponse()
        received = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: _plain(a.value) for a in resource_spans.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                received += [ReceivedSpan.from_proto(service, s) for s in scope_spans.spans]
        with self._lock:
            self.spans.extend(received)
            self.count += len(received)
        return ExportTraceServiceResponse()

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """Spans received so far, once ``predicate`` holds for them (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"spans never matched; got {[s.name for s in spans]}")
            time.sleep(0.05)
