"""Scoring spans reach a real OTLP/gRPC receiver from a live ``firewatch serve``: one
``firewatch.scoring`` span per scored batch and stream, inside the request's trace,
with the stream, the model version and the number of points."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import numpy as np

from tests import servers
from tests.detection.helpers import API, points, recent_stream, unique_stream
from tests.observability.otlp import OtlpReceiver, ReceivedSpan


def _scoring(spans: list[ReceivedSpan], stream: str) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.name == "firewatch.scoring"
        and s.attributes.get("firewatch.detection.stream") == stream
    ]


def _parent_received(spans: list[ReceivedSpan], stream: str, trace_id: str) -> bool:
    ids = {s.span_id for s in spans if s.trace_id == trace_id}
    return any(s.trace_id == trace_id and s.parent_span_id in ids for s in _scoring(spans, stream))


async def test_a_scored_batch_is_one_scoring_span_in_the_request_trace(
    fresh_database: str, redis_url: str, tmp_path: Path
) -> None:
    receiver = OtlpReceiver().start()
    env = {
        "FIREWATCH_DATABASE_URL": fresh_database,
        "FIREWATCH_REDIS_URL": redis_url,
        "FIREWATCH_DATA_DIR": str(tmp_path / "data"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "firewatch-scoring-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    name, untrained = unique_stream("traced"), unique_stream("untrained")
    stream = recent_stream(seed=21, test_points=40)
    trace_id = secrets.token_hex(16)
    try:
        with servers.live_server(env, tmp_path / "serve.log", ready_timeout=240) as server:
            auth = servers.bearer(server.base_url)
            async with httpx.AsyncClient(base_url=server.base_url, headers=auth, timeout=60) as c:
                for s in (name, untrained):
                    r = await c.put(f"{API}/streams/{s}", json={"labels": {"category": "x"}})
                    assert r.status_code == 201, r.text
                history = points(name, stream.train_values, stream.train_epochs)
                assert (await c.post(API, json={"points": history})).status_code == 200
                r = await c.post(f"{API}/streams/{name}/models", json={"activate": True})
                assert r.status_code == 201, r.text
                version = r.json()["version"]
                batch = points(name, stream.test_values, stream.test_epochs) + points(
                    untrained, np.ones(5), stream.test_epochs[:5]
                )
                r = await c.post(
                    API,
                    json={"points": batch},
                    headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                )
                assert r.status_code == 200, r.text
                scored = {s["stream"]: s["scored"] for s in r.json()["streams"]}
            # the scoring span and the request's spans may come in different batches
            spans = receiver.wait_for(lambda got: _parent_received(got, name, trace_id))
    finally:
        receiver.stop()

    in_trace = [s for s in spans if s.trace_id == trace_id]
    (scoring,) = _scoring(in_trace, name)
    assert scoring.attributes["firewatch.detection.model_version"] == str(version)
    assert scoring.attributes["firewatch.detection.points"] == len(stream.test_values)
    assert scored[name] == len(stream.test_values)
    assert isinstance(scoring.attributes["firewatch.detection.anomalies"], int)
    assert scoring.service_name == "firewatch-scoring-test"
    # a child of a span of this request, which is itself in the incoming trace
    assert scoring.parent_span_id in {s.span_id for s in in_trace}
    # a stream without a model is stored, not scored: no scoring span for it
    assert _scoring(spans, untrained) == []
    assert scored[untrained] == 0
