"""Incidents through HTTP against a real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from firewatch.runtime.database import PgPool

API = "/api/v1/incidents"


def unique(prefix: str = "svc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"title": "Feature store lag", "severity": "SEV3", **fields}
    r = await client.post(API, json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_create_get_round_trip(client: httpx.AsyncClient) -> None:
    svc = unique()
    r = await client.post(
        API,
        json={
            "title": "Model accuracy dropped 12%",
            "severity": "sev1",
            "category": "model_degradation",
            "description": "ranker v7 AUC fell after the 02:00 retrain",
            "service": svc,
            "team": "ranking",
            "owner": "alice",
            "labels": {"model": "ranker", "region": "eu-west-1"},
        },
    )
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    created = r.json()
    assert created["id"].startswith("INC-")
    assert r.headers["location"] == f"{API}/{created['id']}"
    assert r.headers["etag"] == '"1"'
    assert created["severity"] == "SEV1"
    assert created["status"] == "open"
    assert created["created_by"] == "test-admin"

    got = await client.get(f"{API}/{created['id']}")
    assert got.status_code == 200
    assert got.json() == created
    by_number = await client.get(f"{API}/{created['number']}")
    assert by_number.json()["id"] == created["id"]


async def test_get_unknown_and_bad_refs_are_404(client: httpx.AsyncClient) -> None:
    for ref in ("INC-999999999", "INC-abc", "0"):
        r = await client.get(f"{API}/{ref}")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 404


async def test_patch_needs_precondition_and_records_timeline(client: httpx.AsyncClient) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}"
    r = await client.patch(url, json={"severity": "SEV2"})
    assert r.status_code == 428

    r = await client.patch(
        url, json={"severity": "SEV2", "owner": "bob"}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert r.json()["severity"] == "SEV2"
    assert r.json()["owner"] == "bob"
    assert r.headers["etag"] == '"2"'

    stale = await client.patch(url, json={"title": "stale edit"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert (await client.get(url)).json()["title"] == "Feature store lag"

    cleared = await client.patch(url, json={"owner": None, "version": 2})
    assert cleared.status_code == 200
    assert cleared.json()["owner"] is None

    items = (await client.get(f"{url}/timeline")).json()["items"]
    kinds = [e["kind"] for e in items]
    assert kinds == ["created", "updated", "updated"]
    assert items[1]["before"] == {"severity": 3, "owner": None}
    assert items[1]["after"] == {"severity": 2, "owner": "bob"}


async def test_concurrent_patches_one_wins(client: httpx.AsyncClient) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}"
    results = await asyncio.gather(
        *(
            client.patch(url, json={"title": f"edit {i}"}, headers={"If-Match": '"1"'})
            for i in range(8)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * 7
    winner = next(r for r in results if r.status_code == 200).json()["title"]
    final = (await client.get(url)).json()
    assert final["title"] == winner
    assert final["version"] == 2


async def test_transitions_and_invalid_transition(client: httpx.AsyncClient) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}"
    bad = await client.post(f"{url}/transitions", json={"to": "closed"})
    assert bad.status_code == 409
    problem = bad.json()
    assert problem["allowed"] == ["acknowledged", "investigating", "mitigated", "resolved"]
    assert "allowed next states" in problem["detail"]

    for target in ("acknowledged", "investigating", "mitigated", "resolved", "closed"):
        r = await client.post(f"{url}/transitions", json={"to": target, "note": f"-> {target}"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == target
    final = (await client.get(url)).json()
    ack, mit, res, clo = (
        final["acknowledged_at"],
        final["mitigated_at"],
        final["resolved_at"],
        final["closed_at"],
    )
    assert inc["opened_at"] <= ack <= mit <= res <= clo
    timeline = (await client.get(f"{url}/timeline")).json()["items"]
    assert [e["after"]["status"] for e in timeline[1:]] == [
        "acknowledged",
        "investigating",
        "mitigated",
        "resolved",
        "closed",
    ]


async def test_concurrent_transitions_serialise(client: httpx.AsyncClient) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}/transitions"
    results = await asyncio.gather(
        *(client.post(url, json={"to": "acknowledged"}) for _ in range(6))
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 5


async def test_comments_in_timeline_with_pagination(client: httpx.AsyncClient) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}"
    for i in range(5):
        r = await client.post(f"{url}/comments", json={"body": f"note {i}"})
        assert r.status_code == 201
        assert r.json()["kind"] == "comment"
    page1 = (await client.get(f"{url}/timeline", params={"limit": 3})).json()
    assert len(page1["items"]) == 3
    assert page1["next_cursor"]
    page2 = (
        await client.get(f"{url}/timeline", params={"limit": 3, "cursor": page1["next_cursor"]})
    ).json()
    notes = [e["note"] for e in page1["items"] + page2["items"] if e["kind"] == "comment"]
    assert notes == [f"note {i}" for i in range(5)]


async def test_list_filters_and_full_text(client: httpx.AsyncClient) -> None:
    svc = unique()
    a = await make(client, service=svc, severity="SEV1", title="Kafka consumer lag on features")
    b = await make(client, service=svc, severity="SEV3", title="Nightly training job OOM killed")
    await client.post(f"{API}/{b['id']}/transitions", json={"to": "acknowledged"})

    def ids(r: httpx.Response) -> list[str]:
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert ids(await client.get(API, params={"service": svc})) == [b["id"], a["id"]]
    assert ids(await client.get(API, params={"service": svc, "severity": "SEV1"})) == [a["id"]]
    assert ids(await client.get(API, params={"service": svc, "status": "acknowledged"})) == [
        b["id"]
    ]
    assert ids(
        await client.get(API, params={"service": svc, "status": ["open", "acknowledged"]})
    ) == [b["id"], a["id"]]
    assert ids(await client.get(API, params={"service": svc, "q": "training OOM"})) == [b["id"]]
    assert ids(await client.get(API, params={"service": svc, "q": "kafka"})) == [a["id"]]
    assert ids(await client.get(API, params={"q": f"{svc}"})) == [b["id"], a["id"]]
    future = "2999-01-01T00:00:00Z"
    assert ids(await client.get(API, params={"service": svc, "opened_after": future})) == []
    assert ids(await client.get(API, params={"service": svc, "opened_before": future})) == [
        b["id"],
        a["id"],
    ]


async def test_keyset_pagination_stable_under_concurrent_inserts(
    client: httpx.AsyncClient,
) -> None:
    svc = unique()
    originals = [(await make(client, service=svc, title=f"incident {i}"))["id"] for i in range(23)]
    seen: list[str] = []
    cursor: str | None = None
    inserted = 0
    while True:
        params: dict[str, Any] = {"service": svc, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(API, params=params)).json()
        seen.extend(i["id"] for i in page["items"])
        # new incidents arrive between pages; they are newer, so they never shift pages
        await asyncio.gather(*(make(client, service=svc, title="late") for _ in range(3)))
        inserted += 3
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(originals))
    assert len(set(seen)) == len(seen)
    everything = (await client.get(API, params={"service": svc, "limit": 200})).json()["items"]
    assert len(everything) == 23 + inserted


async def test_bad_cursor_is_400(client: httpx.AsyncClient) -> None:
    for cursor in ("garbage", "azE6LTE", "!!!"):
        r = await client.get(API, params={"cursor": cursor})
        assert r.status_code == 400
        assert r.json()["type"].endswith("/bad-request")


async def _count(pool: PgPool) -> tuple[int, int]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM incidents) AS i,"
            " (SELECT count(*) FROM incident_timeline) AS t"
        )
        assert row is not None
        return int(row["i"]), int(row["t"])


async def test_bad_input_is_problem_json_and_changes_nothing(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    inc = await make(client, service=unique())
    url = f"{API}/{inc['id']}"
    before = await _count(pool)
    headers = {"content-type": "application/json"}
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", API, b"{not json", 400),
        ("POST", API, b"", 422),
        ("POST", API, b'{"title": 5, "severity": "SEV1"}', 422),
        ("POST", API, b'{"title": "x", "severity": "SEV9"}', 422),
        ("POST", API, b'{"title": "x", "severity": "SEV1", "bogus": 1}', 422),
        ("POST", API, b'{"title": "x\\u0000y", "severity": "SEV1"}', 422),
        ("POST", API, b'{"title": "x", "severity": "SEV1", "service": "a\\u0000"}', 422),
        ("POST", API, b'{"title": "", "severity": "SEV1"}', 422),
        ("POST", API, b'{"title": "x", "severity": "SEV1", "category": "nope"}', 422),
        ("PATCH", url, b'{"title": null, "version": 1}', 422),
        ("PATCH", url, b'{"labels": {"k": "\\u0000"}, "version": 1}', 422),
        ("POST", f"{url}/transitions", b'{"to": "sideways"}', 422),
        ("POST", f"{url}/comments", b'{"body": ""}', 422),
        ("POST", f"{url}/comments", b"[1,2]", 422),
    ]
    huge_labels = {f"k{i}": "v" for i in range(65)}
    cases.append(
        (
            "POST",
            API,
            httpx.Request(
                "POST", "/", json={"title": "x", "severity": "SEV1", "labels": huge_labels}
            ).content,
            422,
        )
    )
    long_value = {"k": "v" * 2000}
    cases.append(
        (
            "POST",
            API,
            httpx.Request(
                "POST", "/", json={"title": "x", "severity": "SEV1", "labels": long_value}
            ).content,
            422,
        )
    )
    cases.append(("POST", API, b'{"title": "' + b"a" * (2 * 1024 * 1024) + b'"}', 413))
    for method, target, body, expected in cases:
        r = await client.request(method, target, content=body, headers=headers)
        assert r.status_code == expected, (method, target, body[:80], r.text[:300])
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["status"] == expected
        assert {"type", "title", "status", "detail"} <= problem.keys()
        # the rejected value is never echoed back (it may be a secret)
        assert "\\u0000" not in r.text
    assert await _count(pool) == before
    assert (await client.get(url)).json()["version"] == 1


async def test_validation_problem_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post(API, json={"title": "x", "severity": "SEV1", "owner": 5})
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["body.owner"]


async def test_method_not_allowed_and_unknown_route(client: httpx.AsyncClient) -> None:
    r = await client.delete(API)
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.get("/api/v1/unknown")
    assert r.status_code == 404
    assert r.json()["type"].endswith("/not-found")


async def test_chunked_oversize_body_is_413(client: httpx.AsyncClient, pool: PgPool) -> None:
    before = await _count(pool)

    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65536

    r = await client.post(API, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert await _count(pool) == before


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    docs = await client.get("/docs")
    assert docs.status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/incidents/{ref}/transitions" in spec["paths"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_openapi_describes_what_the_api_sends(client: httpx.AsyncClient) -> None:
    """Generated clients trust /openapi.json: bodies had been described as strings (our
    JSONResponse was not a starlette one) and 422s as FastAPI's application/json
    ``detail`` list, neither of which firewatch sends."""
    spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"][API]["post"]["responses"]
    assert responses["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IncidentOut"
    }
    incident = spec["components"]["schemas"]["IncidentOut"]
    created = await make(client)
    assert set(incident["required"]) <= set(created)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code == "default" or code.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        code,
                    )
                elif "content" in response:
                    assert response["content"]["application/json"].get("schema") != {
                        "type": "string"
                    }, (method, path, code)
            assert "default" in operation["responses"], (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # the other answers a route gives are described too: CSV tables, a stream's 201
    assert (
        "text/csv" in spec["paths"]["/api/v1/analytics/slo"]["get"]["responses"]["200"]["content"]
    )
    put_stream = spec["paths"]["/api/v1/signals/streams/{name}"]["put"]["responses"]
    assert "application/json" in put_stream["201"]["content"]
    # every reference resolves in the document (the Alertmanager body's "#/$defs/Alert"
    # had pointed at nothing: its schema's $defs sat inside the operation)
    refs = _refs(spec)
    assert refs
    for ref in refs:
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict), ref
            assert part in node, ref
            node = node[part]
    # and what is described is what comes: a 422 with the documented fields
    problem = responses["422"]["content"]["application/problem+json"]["schema"]
    r = await client.post(API, json={"title": "", "severity": "SEV9"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(problem["required"]) <= set(body)
    assert all(
        set(problem["properties"]["errors"]["items"]["required"]) <= set(e) for e in body["errors"]
    )
