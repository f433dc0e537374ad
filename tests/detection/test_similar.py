"""Similar incidents over HTTP: TF-IDF neighbours, resolutions, kept current."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from firewatch.detection import similar_service
from firewatch.detection.similar import SimilarIndex, incident_text
from firewatch.runtime.database import PgPool

API = "/api/v1/incidents"


async def _make(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post(API, json={"severity": "SEV3", **fields})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def test_index_ranks_the_closest_text_first_and_updates_incrementally() -> None:
    index = SimilarIndex()
    docs = {
        1: incident_text(title="ranker auc dropped after retrain", service="ranker"),
        2: incident_text(title="feature store lag on user features", service="fs"),
        3: incident_text(title="billing token cost spike", service="billing"),
    }
    index.build(list(docs), list(docs.values()))
    top = index.query("auc of the ranker dropped", 2)
    assert top[0].incident_id == 1
    assert 0 < top[0].score <= 1
    index.upsert([(3, incident_text(title="ranker auc regression", service="ranker"))])
    assert {m.incident_id for m in index.query("ranker auc", 2)} == {1, 3}
    assert index.query("ranker auc", 5, exclude=1)[0].incident_id == 3
    assert index.query("zzzz unknown words", 3) == []


async def test_similar_endpoint_returns_resolutions_and_follows_changes(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    tag = uuid.uuid4().hex[:8]
    first = await _make(
        client,
        title=f"Embedding service {tag} OOM on batch backfill",
        description="pods killed, gpu memory exhausted",
        service=f"emb-{tag}",
        category="availability",
    )
    url = f"{API}/{first['id']}/transitions"
    r = await client.post(url, json={"to": "resolved", "note": f"capped batch size {tag}"})
    assert r.status_code == 200, r.text
    await _make(client, title=f"Unrelated {uuid.uuid4().hex} report", service="other")
    second = await _make(
        client,
        title=f"Embedding service {tag} OOM again",
        description="gpu memory exhausted during backfill",
        service=f"emb-{tag}",
        category="availability",
    )
    r = await client.get(f"{API}/{second['id']}/similar")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items[0]["id"] == first["id"]
    assert items[0]["resolution"] == f"capped batch size {tag}"
    assert items[0]["status"] == "resolved"
    assert all(i["id"] != second["id"] for i in items)

    # An edit is seen by the next query (incremental catch-up, no rebuild).
    third = await _make(client, title=f"Something else {uuid.uuid4().hex}")
    patch = await client.patch(
        f"{API}/{third['id']}",
        json={"title": f"Embedding service {tag} OOM on backfill once more"},
        headers={"If-Match": '"1"'},
    )
    assert patch.status_code == 200, patch.text
    r = await client.get(f"{API}/{second['id']}/similar", params={"k": 3})
    assert third["id"] in [i["id"] for i in r.json()["items"]]

    # Suggestions at open time are stored once per new incident.
    assert await similar_service.suggest_new(pool, 5, 300.0, limit=10_000) >= 0
    stored = (await client.get(f"{API}/{second['id']}/similar")).json()["suggested_at_open"]
    assert stored is not None
    assert stored["items"][0]["id"] == first["id"]
    assert all(int(i["id"][4:]) < second["number"] for i in stored["items"])


async def test_similar_bad_refs(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/INC-999999999/similar")).status_code == 404
    r = await client.get(f"{API}/nope/similar")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"{API}/1/similar", params={"k": 0})).status_code == 422
