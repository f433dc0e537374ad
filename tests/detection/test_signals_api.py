"""Signals over HTTP: bad input, idempotent retries, scoring, incidents."""

from __future__ import annotations

import httpx
import numpy as np
import orjson

from firewatch.runtime.database import PgPool
from tests.conftest import ClientFor, IntegrationKey
from tests.detection.helpers import (
    API,
    iso,
    points,
    post,
    recent_stream,
    register,
    seed_and_train,
    shifted,
    unique_stream,
)

JSON = {"content-type": "application/json"}


async def _problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert body["status"] == status
    return body


async def test_nan_and_infinity_are_refused(client: httpx.AsyncClient) -> None:
    name = unique_stream()
    await register(client, name)
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        point = f'{{"stream": "{name}", "ts": "2026-01-01T00:00:00Z", "value": {literal}}}'
        raw = f'{{"points": [{point}]}}'
        r = await client.post(API, content=raw, headers=JSON)
        await _problem(r, 422)


async def test_bad_points_are_problem_json(client: httpx.AsyncClient) -> None:
    name = unique_stream()
    await register(client, name)
    ok = {"stream": name, "ts": "2026-01-01T00:00:00Z", "value": 1.0}
    bad_batches = [
        [],
        [{**ok, "ts": "2026-01-01T00:00:00"}],  # no offset
        [{**ok, "ts": "2999-01-01T00:00:00Z"}],  # future
        [{**ok, "value": "high"}],
        [{**ok, "stream": "bad name!"}],
        [{**ok, "extra": 1}],
        [ok, {**ok, "value": 2.0}],  # duplicate timestamp in one batch
    ]
    for batch in bad_batches:
        r = await client.post(API, json={"points": batch})
        await _problem(r, 422)
    dup = await client.post(API, json={"points": [ok, {**ok, "ts": "2026-01-01T00:00:00+00:00"}]})
    body = await _problem(dup, 422)
    assert body["errors"] == [
        {
            "loc": ["body", "points", "1", "ts"],
            "field": "body.points.1.ts",
            "type": "value_error",
            "msg": "duplicate timestamp of its stream",
        }
    ]
    unknown = await client.post(API, json={"points": [ok, {**ok, "stream": "never-registered"}]})
    await _problem(unknown, 422)
    assert [e["field"] for e in unknown.json()["errors"]] == ["body.points.1.stream"]


async def test_stream_description_over_the_column_limit_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    """The column holds 2,000 characters: 2,001 used to reach PostgreSQL's CHECK (a 500),
    and an update that is refused leaves the stream as it was."""
    name = unique_stream()
    await register(client, name, description="first")
    r = await client.put(f"{API}/streams/{name}", json={"description": "x" * 2001})
    body = await _problem(r, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["body.description"]
    r = await client.get(f"{API}/streams/{name}")
    assert r.json()["description"] == "first"
    await _problem(
        await client.put(f"{API}/streams/{unique_stream()}", json={"description": "x" * 2001}), 422
    )
    r = await client.put(f"{API}/streams/{name}", json={"description": "y" * 2000})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "y" * 2000


async def test_unknown_stream_is_refused_without_storing_anything(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    known = unique_stream()
    await register(client, known)
    missing = unique_stream("missing")
    batch = [
        {"stream": known, "ts": "2026-01-01T00:00:00Z", "value": 1.0},
        {"stream": missing, "ts": "2026-01-01T00:00:00Z", "value": 1.0},
    ]
    body = await _problem(await client.post(API, json={"points": batch}), 422)
    assert body["unknown_streams"] == [missing]
    r = await client.get(f"{API}/streams/{known}/points")
    assert r.json()["items"] == []  # the whole batch was refused
    await _problem(await client.get(f"{API}/streams/{missing}"), 404)


async def test_oversized_batches(client: httpx.AsyncClient) -> None:
    name = unique_stream()
    await register(client, name)
    big = [{"stream": name, "ts": iso(1.7e9 + i), "value": 1.0} for i in range(100_000)]
    # 100k points are ~7 MB: over the default body limit, refused before parsing.
    r = await client.post(API, content=orjson.dumps({"points": big}), headers=JSON)
    await _problem(r, 413)
    # Under the body limit but over FIREWATCH_SIGNALS_MAX_BATCH (10,000 points).
    compact = [{"stream": name, "ts": iso(1.7e9 + i), "value": 1} for i in range(10_001)]
    payload = orjson.dumps({"points": compact})
    assert len(payload) < 1024 * 1024
    body = await _problem(await client.post(API, content=payload, headers=JSON), 422)
    assert "at most 10000" in str(body["detail"])


async def test_out_of_order_and_retried_batches(client: httpx.AsyncClient) -> None:
    name = unique_stream()
    await register(client, name)
    batch = [
        {"stream": name, "ts": "2026-01-01T00:10:00Z", "value": 3.0},
        {"stream": name, "ts": "2026-01-01T00:00:00Z", "value": 1.0},
        {"stream": name, "ts": "2026-01-01T00:05:00Z", "value": 2.0, "labels": {"host": "a"}},
    ]
    first = await post(client, batch)
    assert first["accepted"] == 3
    assert first["streams"][0]["model_version"] is None  # no model yet: stored, unscored
    again = await post(client, batch)  # a retry changes nothing
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    late = await post(client, [{"stream": name, "ts": "2026-01-01T00:02:30Z", "value": 9.0}])
    assert late["streams"][0]["late"] == 1
    stored = (await client.get(f"{API}/streams/{name}/points")).json()["items"]
    assert [p["value"] for p in stored] == [1.0, 9.0, 2.0, 3.0]
    assert stored[2]["labels"] == {"host": "a"}


async def test_injected_anomaly_opens_exactly_one_incident(client: httpx.AsyncClient) -> None:
    name = unique_stream("e2e")
    stream = recent_stream(seed=7)
    model = await seed_and_train(client, name, stream, service=name)
    assert model["version"] == 1
    assert model["status"] == "active"
    assert model["evaluation"]["holdout_points"] > 0

    clean = await post(client, points(name, stream.test_values[:300], stream.test_epochs[:300]))
    result = clean["streams"][0]
    assert result["model_version"] == 1
    assert result["scored"] == 300
    assert result["incident"] is None, result

    values = shifted(stream, 300, 40, 5.0)
    hit = await post(client, points(name, values[300:360], stream.test_epochs[300:360]))
    first = hit["streams"][0]
    assert first["alarms"] > 0
    assert first["incident_created"] is True
    ref = first["incident"]
    # The anomaly goes on in the next batch: same incident, not a new one.
    more = shifted(stream, 360, 20, 5.0)
    again = await post(client, points(name, more[360:380], stream.test_epochs[360:380]))
    assert again["streams"][0]["incident"] in (None, ref)

    incidents = await client.get("/api/v1/incidents", params={"service": name, "limit": 10})
    matching = incidents.json()["items"]
    assert [i["id"] for i in matching] == [ref]
    incident = matching[0]
    assert incident["category"] == "model_degradation"
    assert incident["severity"] == "SEV3"
    assert incident["title"] == f"Anomaly on {name}"
    assert incident["labels"]["stream"] == name

    scored = (await client.get(f"{API}/streams/{name}/points", params={"limit": 100})).json()
    assert any(p["alarm"] for p in scored["items"])
    assert np.isfinite([p["score"] for p in scored["items"] if p["score"] is not None]).all()


async def test_permissions(
    client_for: ClientFor, integration_key: IntegrationKey, anon_client: httpx.AsyncClient
) -> None:
    name = unique_stream("perm")
    viewer = await client_for("viewer")
    assert (await viewer.put(f"{API}/streams/{name}", json={})).status_code == 403
    responder = await client_for("responder")
    batch = {"points": [{"stream": name, "ts": "2026-01-01T00:00:00Z", "value": 1.0}]}
    assert (await responder.post(API, json=batch)).status_code == 403
    assert (await anon_client.post(API, json=batch)).status_code == 401
    assert (await viewer.get(f"{API}/streams")).status_code == 200
    admin = await client_for("admin")
    assert (await admin.put(f"{API}/streams/{name}", json={})).status_code == 201
    key = await integration_key(["signals:write"])
    r = await anon_client.post(API, json=batch, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    alerts_only = await integration_key(["alerts:write"])
    r = await anon_client.post(API, json=batch, headers={"Authorization": f"Bearer {alerts_only}"})
    assert r.status_code == 403
    r = await anon_client.put(
        f"{API}/streams/{name}", json={}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403
