"""Changes made through /api/v1/incidents queue notifications in their transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from firewatch.notifications import store as notifications_store
from firewatch.runtime.database import PgPool
from tests.incidents.test_api import API, make, unique
from tests.notifications.receiver import receiver
from tests.notifications.test_delivery import FAST, destination, drain, notifications_of


async def test_a_manual_transition_reaches_only_the_destination_that_wants_it(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    svc = unique()
    with receiver() as acks, receiver() as resolutions:
        wanted = await destination(client, svc, acks.url, event_kinds=["incident.acknowledged"])
        acks.secret = wanted["secret"]
        await destination(client, svc, resolutions.url, event_kinds=["incident.resolved"])
        inc = await make(client, service=svc, severity="SEV2")
        r = await client.post(f"{API}/{inc['id']}/transitions", json={"to": "acknowledged"})
        assert r.status_code == 200, r.text
        [note] = await notifications_of(client, inc["id"])
        assert note["event_kind"] == "incident.acknowledged"
        assert note["destination"] == wanted["name"]

        async def delivered() -> bool:
            return len(acks.delivered) == 1

        await drain(pool, FAST, delivered)
    got = acks.delivered[0]
    assert got.signature_ok is True
    body = got.json()
    assert body["event"] == "incident.acknowledged"
    assert body["incident"]["id"] == inc["id"]
    assert body["incident"]["number"] == inc["number"]
    assert body["incident"]["status"] == "acknowledged"
    assert body["incident"]["severity"] == "SEV2"
    assert body["incident"]["service"] == svc
    assert body["at"].endswith("Z")
    assert resolutions.requests == []


async def test_create_patch_and_comment_notify_with_the_incident_as_it_stands(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    svc = unique()
    with receiver() as rx:
        await destination(client, svc, rx.url)  # every event kind
        listener = await pool.acquire()
        woken: asyncio.Queue[str] = asyncio.Queue()

        def on_wake(*args: Any) -> None:
            woken.put_nowait(args[2])

        await listener.add_listener(notifications_store.WAKE_CHANNEL, on_wake)
        try:
            inc = await make(client, service=svc, severity="SEV3", title="Lag on features")
            # the create statement queued the notification and woke the workers
            await asyncio.wait_for(woken.get(), 10)
        finally:
            await listener.remove_listener(notifications_store.WAKE_CHANNEL, on_wake)
            await pool.release(listener)
        assert "timeline_id" not in inc  # the API shape is unchanged
        r = await client.patch(
            f"{API}/{inc['id']}", json={"severity": "SEV1"}, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
        r = await client.patch(
            f"{API}/{inc['id']}", json={"owner": "bob"}, headers={"If-Match": '"2"'}
        )
        assert r.status_code == 200, r.text
        r = await client.post(f"{API}/{inc['id']}/comments", json={"body": "rolled back v7"})
        assert r.status_code == 201, r.text
        notes = await notifications_of(client, inc["id"])
        assert [n["event_kind"] for n in reversed(notes)] == [
            "incident.opened",
            "incident.escalated",
            "incident.updated",
            "incident.commented",
        ]

        async def all_delivered() -> bool:
            return len(rx.delivered) == 4

        await drain(pool, FAST, all_delivered)
    bodies = {b["event"]: b for b in (x.json() for x in rx.delivered)}
    opened = bodies["incident.opened"]
    assert opened["incident"]["id"] == inc["id"]
    assert opened["incident"]["title"] == "Lag on features"
    assert opened["incident"]["severity"] == "SEV3"
    assert opened["incident"]["source"] is None
    assert bodies["incident.escalated"]["incident"]["severity"] == "SEV1"
    assert bodies["incident.escalated"]["details"] == {
        "fields": ["severity"],
        "previous_severity": "SEV3",
    }
    assert bodies["incident.updated"]["details"] == {"fields": ["owner"]}
    comment = bodies["incident.commented"]["details"]
    assert comment["comment"] == "rolled back v7"
    assert isinstance(comment["timeline_id"], int)


async def test_a_failed_change_queues_nothing(client: httpx.AsyncClient, pool: PgPool) -> None:
    svc = unique()
    with receiver() as rx:
        await destination(client, svc, rx.url)
        inc = await make(client, service=svc)
        before = await notifications_of(client, inc["id"])
        assert [n["event_kind"] for n in before] == ["incident.opened"]
        # open -> closed is not a move the lifecycle allows: 409, transaction rolled back
        r = await client.post(f"{API}/{inc['id']}/transitions", json={"to": "closed"})
        assert r.status_code == 409
        # a stale version: 412, nothing written either
        r = await client.patch(
            f"{API}/{inc['id']}", json={"title": "renamed"}, headers={"If-Match": '"7"'}
        )
        assert r.status_code == 412
        assert await notifications_of(client, inc["id"]) == before
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE incident_id = $1", inc["number"]
        )
    assert n == 1


async def test_with_tracing_off_no_traceparent_is_stored(
    client: httpx.AsyncClient, pool: PgPool
) -> None:
    svc = unique()
    with receiver() as rx:
        await destination(client, svc, rx.url)
        inc = await make(client, service=svc)
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT traceparent FROM notifications WHERE incident_id = $1", inc["number"]
        )
    assert [r["traceparent"] for r in rows] == [None]
