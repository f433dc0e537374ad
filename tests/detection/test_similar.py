"""Similar incidents over HTTP: TF-IDF neighbours, resolutions, kept current."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx

from firewatch.detection import similar_service
from firewatch.detection.similar import Match, SimilarIndex, incident_text
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


def _corpus_index(size: int = 600) -> tuple[SimilarIndex, list[int], list[str]]:
    from firewatch.detection.evaluation import _corpus

    ids, texts, _ = _corpus(size, size // 10, seed=3)
    index = SimilarIndex()
    index.build(ids, texts)
    return index, ids, texts


def _pairs(matches: list[Match]) -> list[tuple[int, float]]:
    return [(m.incident_id, m.score) for m in matches]


def test_batch_query_equals_single_queries_and_keeps_only_earlier_incidents() -> None:
    index, ids, texts = _corpus_index()
    index.upsert([(ids[i], texts[i] + " reopened after rollback") for i in range(0, 600, 40)])
    picked = list(range(5, 600, 37))
    batch = index.query_many(
        [texts[i] for i in picked], 5, exclude=[ids[i] for i in picked], before=None
    )
    assert [_pairs(b) for b in batch] == [
        _pairs(index.query(texts[i], 5, exclude=ids[i])) for i in picked
    ]
    earlier = index.query_many(
        [texts[i] for i in picked],
        5,
        exclude=[ids[i] for i in picked],
        before=[ids[i] for i in picked],
    )
    for i, answer in zip(picked, earlier, strict=True):
        assert all(m.incident_id < ids[i] for m in answer)
        assert [m.score for m in answer] == sorted((m.score for m in answer), reverse=True)
    assert any(answer for answer in earlier)
    assert index.query_many([], 5) == []


def test_a_run_of_equal_texts_gets_each_query_its_own_answer() -> None:
    """Equal consecutive texts share one scoring pass (an alert storm's incidents);
    exclude and before still apply to each query alone."""
    index, ids, texts = _corpus_index()
    index.upsert([(ids[i], texts[i] + " reopened after rollback") for i in range(0, 600, 40)])
    picked = [300, 300, 301, 301, 301, 7, 300]
    queries = [texts[i] for i in picked]
    # each query excludes a different incident and keeps a different range before it
    exclude = [ids[i] for i in (300, 299, 301, 5, 302, 7, 300)]
    before = [ids[i] for i in (301, 150, 302, 400, 20, 8, 599)]
    batch = index.query_many(queries, 5, exclude=exclude, before=before)
    alone = [
        index.query_many([q], 5, exclude=[x], before=[b])[0]
        for q, x, b in zip(queries, exclude, before, strict=True)
    ]
    assert [_pairs(b) for b in batch] == [_pairs(a) for a in alone]
    assert _pairs(batch[0]) != _pairs(batch[1])  # same text, other masks, other answer
    assert all(answer for answer in batch)


def test_a_storm_of_equal_incidents_ranks_ties_by_id_in_a_run_too() -> None:
    """An index of equal texts (every score tied) and a batch of the same text: each
    query gets the lowest ids it may return, as alone."""
    storm = "feature drift on checkout-ranker psi above 0.2"
    index = SimilarIndex()
    index.build(list(range(1, 301)), [storm] * 300)
    index.upsert([(n, storm) for n in range(301, 341)])  # the side matrix too
    index.upsert([(5, storm + " rollback")])  # one stale main row, now a side row
    batch_ids = [200, 3, 4, 250, 320, 6]
    batch = index.query_many(
        [storm] * len(batch_ids), 5, exclude=batch_ids, before=[b + 1 for b in batch_ids]
    )
    alone = [index.query_many([storm], 5, exclude=[b], before=[b + 1])[0] for b in batch_ids]
    assert [_pairs(b) for b in batch] == [_pairs(a) for a in alone]
    assert [m.incident_id for m in batch[0]] == [1, 2, 3, 4, 6]
    assert [m.incident_id for m in batch[1]] == [1, 2]  # only ids below 4, itself excluded


def test_compaction_gives_the_same_answers_as_a_fresh_build() -> None:
    index, ids, texts = _corpus_index()
    changed = {ids[i]: f"{texts[i]} gpu quota exhausted {i}" for i in range(0, 600, 3)}
    index.upsert(changed.items())
    assert index.side_size == len(changed)
    assert index.needs_rebuild(minimum=10)
    index.compact()
    assert index.side_size == 0
    assert len(index) == 600
    current = dict(zip(ids, texts, strict=True)) | changed
    fresh = SimilarIndex()
    fresh.build(list(current), list(current.values()))
    for i in range(0, 600, 29):
        assert _pairs(index.query(current[ids[i]], 5)) == _pairs(fresh.query(current[ids[i]], 5))


def test_queries_run_while_another_thread_upserts() -> None:
    index, ids, texts = _corpus_index()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(30):
                index.upsert([(ids[(n * 7 + j) % 600], texts[j] + f" w{n}") for j in range(20)])
                if n % 10 == 9:
                    index.compact()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    queries = 0
    while writer.is_alive() or queries < 50:
        found = index.query(texts[queries % 600], 3, exclude=ids[queries % 600])
        assert found
        assert all(0 < m.score <= 1 for m in found)
        queries += 1
    writer.join()
    assert errors == []
    assert len(index) == 600


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
    state = similar_service.SimilarState()  # a fresh index, built from the database
    assert await similar_service.suggest_all(state, pool, 5, 300.0, batch=100) >= 1
    assert await similar_service.suggest_all(state, pool, 5, 300.0, batch=100) == 0
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


async def test_concurrent_first_queries_share_one_build(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    tag = uuid.uuid4().hex[:8]
    first = await _make(client, title=f"Vector db {tag} compaction stalled", service=f"vdb-{tag}")
    second = await _make(client, title=f"Vector db {tag} compaction stalled again")
    state = similar_service.SimilarState()
    answers = await asyncio.gather(
        *(similar_service.similar(state, pool, second["number"], 3, 300.0) for _ in range(6))
    )
    assert all(a["items"] == answers[0]["items"] for a in answers)
    assert answers[0]["items"][0]["id"] == first["id"]
    assert state.built is None
    assert state.index is not None


async def test_a_change_that_commits_after_a_later_one_is_still_indexed(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    """``updated_at`` is stamped before commit: a transaction stamped earlier can commit
    after the index's watermark passed its stamp. The catch-up looks back for it."""
    tag = uuid.uuid4().hex[:8]
    target = await _make(client, title=f"Kafka consumer {tag} lag on orders topic")
    state = similar_service.SimilarState()
    await similar_service.similar(state, pool, target["number"], 5, 300.0)  # builds
    later = await _make(client, title=f"Unrelated {uuid.uuid4().hex} note")
    await similar_service.similar(state, pool, target["number"], 5, 300.0)  # catches up
    assert state.watermark is not None
    assert state.watermark[1] == later["number"]
    async with pool.acquire() as conn:
        late = await conn.fetchval(
            """
            INSERT INTO incidents (title, severity, category, created_by, status, opened_at,
                                   updated_at)
            VALUES ($1, 3, 'latency', 'test', 'open', $2, $2) RETURNING id
            """,
            f"Kafka consumer {tag} lag on orders topic again",
            state.watermark[0] - timedelta(seconds=1),
        )
    found = await similar_service.similar(state, pool, target["number"], 5, 300.0)
    assert f"INC-{late}" in [i["id"] for i in found["items"]]
    # seen once: the next catch-up re-reads it in the overlap but does not re-index it
    side = state.index.side_size if state.index is not None else 0
    await similar_service.similar(state, pool, target["number"], 5, 300.0)
    assert state.index is not None
    assert state.index.side_size == side
