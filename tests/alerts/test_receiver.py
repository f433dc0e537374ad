"""The Alertmanager receiver over HTTP, against a real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from firewatch.runtime.database import PgPool
from tests.alerts.conftest import load_fixture, raw_fixture, with_group
from tests.conftest import IntegrationKey, asgi_client

URL = "/api/v1/integrations/alertmanager"


async def post(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(URL, json=payload)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def incident(client: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/incidents/{ref}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def timeline_kinds(client: httpx.AsyncClient, ref: str) -> list[str]:
    r = await client.get(f"/api/v1/incidents/{ref}/timeline")
    return [e["kind"] for e in r.json()["items"]]


async def test_captured_payloads_parse_unchanged(client: httpx.AsyncClient, pool: PgPool) -> None:
    # The captured bodies, byte for byte: the groupKeys are the fixtures' own, so
    # this test owns them (no other test posts these files unmodified).
    r = await client.post(
        URL,
        content=raw_fixture("firing-group-of-two.json"),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["alerts"] == 2
    r = await client.post(URL, content=raw_fixture("firing-single.json"))
    assert r.status_code == 200, r.text
    single = r.json()
    assert single["incident"] != first["incident"]
    r = await client.post(URL, content=raw_fixture("group-one-resolved.json"))
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["incident"] == first["incident"]
    assert resolved["changed"] == 1
    inc = await incident(client, first["incident"])
    assert inc["severity"] == "SEV1"
    assert inc["service"] == "fraud-scorer"
    assert inc["team"] == "ml"
    assert inc["status"] == "open"  # fraud-v8 still fires
    warn = await incident(client, single["incident"])
    assert warn["severity"] == "SEV3"
    assert warn["title"] == "Null rate of txn_amount is 12%"
    r = await client.get(f"/api/v1/incidents/{first['incident']}/alerts")
    alerts = {a["fingerprint"]: a for a in r.json()["items"]}
    assert set(alerts) == {"dfd3554f81e2ff8e", "87201d319a4fe773"}
    assert alerts["dfd3554f81e2ff8e"]["status"] == "resolved"
    # Links, once seen, are kept (the resolved copy carries neither).
    assert alerts["dfd3554f81e2ff8e"]["runbook_url"] == "https://runbooks.example/model_degradation"
    assert alerts["dfd3554f81e2ff8e"]["annotations"] == {
        "summary": "Accuracy of fraud-v7 dropped below 0.80"
    }
    assert alerts["87201d319a4fe773"]["status"] == "firing"
    assert alerts["87201d319a4fe773"]["ends_at"] is None
    kinds = await timeline_kinds(client, first["incident"])
    assert kinds == ["created", "alerts_joined", "alerts_resolved"]


async def test_links_kept(client: httpx.AsyncClient, group_key: str) -> None:
    out = await post(client, with_group(load_fixture("firing-group-of-two.json"), group_key))
    r = await client.get(f"/api/v1/incidents/{out['incident']}/alerts")
    alerts = {a["fingerprint"]: a for a in r.json()["items"]}
    v7 = alerts["dfd3554f81e2ff8e"]
    assert v7["generator_url"] == "http://prometheus.example/graph?g0.expr=model_accuracy%3C0.8"
    assert v7["runbook_url"] == "https://runbooks.example/model_degradation"
    assert v7["labels"]["model"] == "fraud-v7"
    assert v7["annotations"]["summary"] == "Accuracy of fraud-v7 dropped below 0.80"
    assert alerts["87201d319a4fe773"]["generator_url"] is None


async def test_duplicates_are_idempotent(client: httpx.AsyncClient, group_key: str) -> None:
    payload = with_group(load_fixture("firing-group-of-two.json"), group_key)
    first = await post(client, payload)
    assert first["created"] is True
    for _ in range(3):
        again = await post(client, payload)
        assert again["incident"] == first["incident"]
        assert again["created"] is False
        assert again["changed"] == 0
    assert await timeline_kinds(client, first["incident"]) == ["created", "alerts_joined"]


async def test_all_resolved_mitigates_then_refire_regresses(
    client: httpx.AsyncClient, group_key: str
) -> None:
    payload = with_group(load_fixture("firing-group-of-two.json"), group_key)
    out = await post(client, payload)
    resolved = with_group(payload, group_key)
    resolved["status"] = "resolved"
    for a in resolved["alerts"]:
        a["status"] = "resolved"
        a["endsAt"] = "2026-11-27T02:00:00Z"
    done = await post(client, resolved)
    assert done["incident"] == out["incident"]
    assert done["status"] == "mitigated"
    inc = await incident(client, out["incident"])
    assert inc["status"] == "mitigated"
    assert inc["acknowledged_at"] is None  # alerts resolving is not a human acknowledgement
    assert inc["mitigated_at"] is not None
    again = await post(client, payload)
    assert again["incident"] == out["incident"]
    assert again["status"] == "investigating"
    kinds = await timeline_kinds(client, out["incident"])
    assert kinds == [
        "created",
        "alerts_joined",
        "alerts_resolved",
        "status_changed",
        "alerts_refired",
        "status_changed",
    ]


async def test_resolved_incident_reopens_within_window(
    client: httpx.AsyncClient, group_key: str
) -> None:
    payload = with_group(load_fixture("firing-single.json"), group_key)
    out = await post(client, payload)
    r = await client.post(
        f"/api/v1/incidents/{out['incident']}/transitions", json={"to": "resolved"}
    )
    assert r.status_code == 200, r.text
    again = await post(client, payload)
    assert again["incident"] == out["incident"]
    inc = await incident(client, out["incident"])
    assert inc["status"] == "open"
    assert inc["reopen_count"] == 1


async def test_resolutions_alone_open_nothing(client: httpx.AsyncClient, group_key: str) -> None:
    payload = with_group(load_fixture("firing-single.json"), group_key)
    payload["status"] = "resolved"
    payload["alerts"][0]["status"] = "resolved"
    out = await post(client, payload)
    assert out["incident"] is None


async def test_unknown_and_newer_fields_tolerated(
    client: httpx.AsyncClient, group_key: str
) -> None:
    payload = with_group(load_fixture("firing-single.json"), group_key)
    payload["notification_reason"] = "repeat_interval"
    payload["routeLabels"] = {"team": "ml"}
    payload["truncatedAlerts"] = 3
    payload["alerts"][0]["somethingNew"] = {"nested": [1, 2]}
    out = await post(client, payload)
    assert out["incident"] is not None


async def test_concurrent_deliveries_open_one_incident(
    client: httpx.AsyncClient, pool: PgPool, group_key: str
) -> None:
    payload = with_group(load_fixture("firing-group-of-two.json"), group_key)
    results = await asyncio.gather(*(client.post(URL, json=payload) for _ in range(20)))
    assert [r.status_code for r in results] == [200] * 20
    refs = {r.json()["incident"] for r in results}
    assert len(refs) == 1
    assert sum(r.json()["created"] for r in results) == 1
    async with pool.acquire() as conn:
        n_incidents = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE group_key = $1", group_key
        )
        n_alerts = await conn.fetchval(
            "SELECT count(*) FROM alerts a JOIN incidents i ON i.id = a.incident_id "
            "WHERE i.group_key = $1",
            group_key,
        )
        joined = await conn.fetchval(
            "SELECT count(*) FROM incident_timeline t JOIN incidents i ON i.id = t.incident_id "
            "WHERE i.group_key = $1 AND t.kind = 'alerts_joined'",
            group_key,
        )
    assert (n_incidents, n_alerts, joined) == (1, 2, 1)


async def test_receiver_takes_an_integration_key(
    app: FastAPI, integration_key: IntegrationKey, group_key: str
) -> None:
    payload = with_group(load_fixture("firing-single.json"), group_key)
    good = await integration_key(["alerts:write"])
    wrong_scope = await integration_key(["signals:write"])
    async with asgi_client(app, token=good) as am:
        r = await am.post(URL, json=payload)
        assert r.status_code == 200, r.text
    async with asgi_client(app, token=wrong_scope) as am:
        assert (await am.post(URL, json=payload)).status_code == 403
    async with asgi_client(app) as anon:
        r = await anon.post(URL, json=payload)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
