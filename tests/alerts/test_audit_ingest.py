"""Incident changes made by ingestion are audited in their transaction, like a responder's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from firewatch.alerts.service import upsert_group_incident
from firewatch.audit import service as audit
from firewatch.runtime.database import PgPool
from tests.alerts.conftest import load_fixture, with_group
from tests.conftest import asgi_client

URL = "/api/v1/integrations/alertmanager"


async def audit_of(client: httpx.AsyncClient, ref: str) -> list[dict[str, Any]]:
    """Audit entries of an incident, oldest first."""
    r = await client.get("/api/v1/audit", params={"target": ref})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items[::-1]


async def test_alertmanager_changes_are_audited_and_the_chain_verifies(
    app: FastAPI, client: httpx.AsyncClient, pool: PgPool, ingest_token: str, group_key: str
) -> None:
    firing = with_group(load_fixture("firing-single.json"), group_key)
    async with asgi_client(app, token=ingest_token, peer="10.1.2.3") as am:
        r = await am.post(URL, json=firing)
        assert r.status_code == 200, r.text
        ref = r.json()["incident"]
        assert r.json()["created"] is True
        # the same group again, unchanged: nothing happens, nothing is audited
        assert (await am.post(URL, json=firing)).json()["changed"] == 0
        # a more severe alert joins: the incident is escalated
        critical = with_group(load_fixture("firing-single.json"), group_key)
        critical["alerts"][0]["labels"]["severity"] = "critical"
        critical["commonLabels"]["severity"] = "critical"
        assert (await am.post(URL, json=critical)).status_code == 200
        # every alert resolved: mitigated
        resolved = with_group(critical, group_key)
        resolved["alerts"][0]["status"] = "resolved"
        assert (await am.post(URL, json=resolved)).json()["status"] == "mitigated"
        # a responder resolves it; the group fires again within the window: reopened
        r = await client.post(f"/api/v1/incidents/{ref}/transitions", json={"to": "resolved"})
        assert r.status_code == 200, r.text
        again = with_group(critical, group_key)
        again["alerts"][0]["startsAt"] = "2026-11-27T03:00:00Z"
        out = (await am.post(URL, json=again)).json()
        assert (out["incident"], out["status"]) == (ref, "open")

    entries = await audit_of(client, ref)
    assert [e["action"] for e in entries] == [
        "incident.create",
        "incident.update",  # severity escalated by the alert
        "incident.transition",  # mitigated: all alerts resolved
        "incident.transition",  # resolved by the responder
        "incident.reopen",
    ]
    by_integration = [e for i, e in enumerate(entries) if i != 3]
    for entry in by_integration:
        assert entry["actor"].startswith("it-")  # the integration key's name
        assert entry["actor_kind"] == "integration"
        assert entry["client"] is not None
        assert entry["client"] != "10.1.2.3"  # pseudonymised
    assert entries[3]["actor"] == "test-admin"
    assert entries[0]["details"] == {"source": "alertmanager"}
    assert entries[1]["details"] == {"fields": ["severity"]}

    await audit.seal_pending(pool, wait=True)
    result = await audit.verify(pool)  # what `firewatch audit verify` runs
    assert result.ok, result.broken
    assert result.checked >= len(entries)


async def test_detector_changes_are_audited_under_a_system_actor(
    client: httpx.AsyncClient, pool: PgPool, group_key: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row, created = await upsert_group_incident(
            conn,
            source="signals",
            group_key=group_key,
            title="Anomaly on checkout latency",
            severity=3,
            category="latency",
            service="checkout",
            team=None,
            labels={"stream": "checkout.latency"},
            actor="detector",
        )
    assert created is True
    [entry] = await audit_of(client, f"INC-{row['id']}")
    assert (entry["action"], entry["actor"], entry["actor_kind"]) == (
        "incident.create",
        "detector",
        "system",
    )


async def test_a_rolled_back_ingestion_leaves_no_audit_entry(pool: PgPool, group_key: str) -> None:
    before = await pool.fetchval("SELECT count(*) FROM audit_log")

    class Abort(Exception):
        pass

    async def open_then_fail() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await upsert_group_incident(
                conn,
                source="signals",
                group_key=group_key,
                title="never committed",
                severity=2,
                category="other",
                service=None,
                team=None,
                labels={},
                actor="detector",
            )
            raise Abort

    with pytest.raises(Abort):
        await open_then_fail()
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == before
