"""The generic signed webhook (PagerDuty Events v2 semantics) over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from firewatch.app import create_app
from firewatch.notifications.model import signature
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings

SECRET = "whsec-test-secret-of-the-ci-integration"
URL = "/api/v1/integrations/webhook/ci"


@pytest.fixture(scope="module")
async def hook_client(settings: Settings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"webhook_secrets": {"ci": SecretStr(SECRET)}})
    app = create_app(configured)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        c = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=transport,
                base_url="http://firewatch.test",
                headers={"Authorization": f"Bearer {admin_token}"},  # for the reads
            )
        )
        yield c


def signed(body: bytes, *, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "content-type": "application/json",
        "x-firewatch-timestamp": str(ts),
        "x-firewatch-signature": signature(secret, ts, body),
    }


async def send(c: httpx.AsyncClient, event: dict[str, Any], **kw: Any) -> httpx.Response:
    body = orjson.dumps(event)
    return await c.post(URL, content=body, headers=signed(body, **kw))


def trigger(key: str, severity: str = "error") -> dict[str, Any]:
    return {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": "Nightly feature backfill failed",
            "source": "airflow-prod",
            "severity": severity,
            "component": "feature-backfill",
            "custom_details": {"team": "data-eng", "dag": "backfill"},
        },
        "links": [{"href": "https://airflow.example/dag/backfill", "text": "DAG"}],
    }


async def status_of(c: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = (await c.get(f"/api/v1/incidents/{ref}")).json()
    return data


async def test_trigger_dedup_acknowledge_resolve(hook_client: httpx.AsyncClient) -> None:
    key = f"backfill-{uuid.uuid4().hex}"
    r = await send(hook_client, trigger(key))
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["dedup_key"] == key
    ref = out["incident"]
    inc = await status_of(hook_client, ref)
    assert (inc["severity"], inc["service"], inc["team"]) == (
        "SEV2",
        "feature-backfill",
        "data-eng",
    )
    assert inc["title"] == "Nightly feature backfill failed"
    # the same event again (a fresh signature): same incident, nothing new
    repeat = {**trigger(key), "client": "a retrying sender"}  # a new request, same event
    again = await send(hook_client, repeat)
    assert again.status_code == 202, again.text
    assert again.json()["incident"] == ref
    assert again.json()["changed"] == 0
    r = await send(hook_client, {"event_action": "acknowledge", "dedup_key": key})
    assert r.status_code == 202, r.text
    inc = await status_of(hook_client, ref)
    assert inc["status"] == "acknowledged"
    assert inc["acknowledged_at"] is not None
    r = await send(hook_client, {"event_action": "resolve", "dedup_key": key})
    assert r.status_code == 202, r.text
    assert (await status_of(hook_client, ref))["status"] == "resolved"
    alerts = (await hook_client.get(f"/api/v1/incidents/{ref}/alerts")).json()["items"]
    assert [(a["status"], a["labels"]["source"]) for a in alerts] == [("resolved", "airflow-prod")]
    assert alerts[0]["runbook_url"] == "https://airflow.example/dag/backfill"


async def test_changes_are_audited_as_the_integration(hook_client: httpx.AsyncClient) -> None:
    key = f"audited-{uuid.uuid4().hex}"
    ref = (await send(hook_client, trigger(key))).json()["incident"]
    await send(hook_client, {"event_action": "acknowledge", "dedup_key": key})
    r = await hook_client.get("/api/v1/audit", params={"target": ref})
    entries = r.json()["items"][::-1]
    assert [(e["action"], e["actor"], e["actor_kind"]) for e in entries] == [
        ("incident.create", "webhook:ci", "integration"),
        ("incident.transition", "webhook:ci", "integration"),
    ]
    assert all(e["client"] and e["client"] != "127.0.0.1" for e in entries)


async def test_trigger_without_key_gets_one(hook_client: httpx.AsyncClient) -> None:
    event = trigger("x")
    del event["dedup_key"]
    r = await send(hook_client, event)
    assert r.status_code == 202, r.text
    assert len(r.json()["dedup_key"]) == 32


async def count(pool: PgPool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM alerts"))


async def test_refusals_store_nothing(hook_client: httpx.AsyncClient, pool: PgPool) -> None:
    before = await count(pool)
    body = orjson.dumps(trigger(f"k-{uuid.uuid4().hex}"))
    bad = signed(body, secret="not-the-secret")
    r = await hook_client.post(URL, content=body, headers=bad)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    old = signed(body, ts=int(time.time()) - 301)
    r = await hook_client.post(URL, content=body, headers=old)
    assert r.status_code == 401
    assert "older than 300 seconds" in r.json()["detail"]
    r = await hook_client.post(URL, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401
    r = await hook_client.post(
        "/api/v1/integrations/webhook/unknown", content=body, headers=signed(body)
    )
    assert r.status_code == 401
    assert r.json()["detail"] == "the signature does not match this integration's secret"
    r = await send(hook_client, {"event_action": "trigger", "dedup_key": "k"})
    assert r.status_code == 422
    r = await send(hook_client, {"event_action": "resolve"})
    assert r.status_code == 422
    r = await send(hook_client, {"event_action": "explode", "dedup_key": "k"})
    assert r.status_code == 422
    raw = b'{"event_action": "trigger",'
    r = await hook_client.post(URL, content=raw, headers=signed(raw))
    assert r.status_code == 400
    assert await count(pool) == before


async def test_replayed_request_refused(hook_client: httpx.AsyncClient) -> None:
    body = orjson.dumps(trigger(f"replay-{uuid.uuid4().hex}"))
    headers = signed(body)
    first = await hook_client.post(URL, content=body, headers=headers)
    assert first.status_code == 202, first.text
    replay = await hook_client.post(URL, content=body, headers=headers)
    assert replay.status_code == 409
    assert "replay" in replay.json()["detail"]


def test_empty_or_short_secrets_are_refused(settings: Settings) -> None:
    """HMAC with an empty (or guessable) key authenticates nothing: anyone could sign."""
    for weak in ("", "short-secret"):
        with pytest.raises(ValidationError, match="at least 16 characters"):
            Settings.model_validate(
                {**settings.model_dump(), "webhook_secrets": {"ci": SecretStr(weak)}}
            )


async def test_signature_and_replay_tricks_are_refused(hook_client: httpx.AsyncClient) -> None:
    body = orjson.dumps(trigger(f"tricks-{uuid.uuid4().hex}"))
    ts = int(time.time())
    good = signed(body, ts=ts)
    mac = good["x-firewatch-signature"].removeprefix("v1=")
    for sig in ("", "v1=", mac, f"V1={mac}", f"v1={mac.upper()}", f"sha256={mac}", f"v0={mac}"):
        r = await hook_client.post(
            URL, content=body, headers={**good, "x-firewatch-signature": sig}
        )
        assert r.status_code == 401, sig
    altered = body.replace(b'"error"', b'"critical"')
    assert altered != body
    r = await hook_client.post(URL, content=altered, headers=good)  # body changed after signing
    assert r.status_code == 401
    late = int(time.time()) + 301
    r = await hook_client.post(URL, content=body, headers=signed(body, ts=late))  # from the future
    assert r.status_code == 401
    r = await hook_client.post(URL, content=body, headers=good)
    assert r.status_code == 202, r.text
    # the same signed request with the timestamp spelled differently is still a replay
    for spelled in (f"+{ts}", f"0{ts}", f"{str(ts)[:1]}_{str(ts)[1:]}"):
        again = {**good, "x-firewatch-timestamp": spelled}
        r = await hook_client.post(URL, content=body, headers=again)
        assert r.status_code == 409, (spelled, r.text)


async def test_unknown_integration_is_checked_like_a_bad_signature(
    hook_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown integration name gets the bad-signature answer *and* the same work:
    an HMAC over the whole body (with a secret nobody has), so the time to answer does
    not tell a prober which integration names exist."""
    from firewatch.alerts import api
    from firewatch.notifications.model import verify_signature as real

    checked: list[tuple[str, int]] = []

    def spy(secret: str, timestamp: int, body: bytes, header: str) -> bool:
        checked.append((secret, len(body)))
        return real(secret, timestamp, body, header)

    monkeypatch.setattr(api, "verify_signature", spy)
    body = orjson.dumps(trigger(f"probe-{uuid.uuid4().hex}"))
    answers = []
    for url, secret in ((URL, "not-the-secret-of-ci"), (URL.replace("/ci", "/nosuch"), SECRET)):
        r = await hook_client.post(url, content=body, headers=signed(body, secret=secret))
        answers.append((r.status_code, r.json()["detail"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
    assert [n for _, n in checked] == [len(body), len(body)]
    assert checked[0][0] == SECRET
    assert checked[1][0] not in (SECRET, "")  # a throwaway secret, never a configured one


async def test_refused_events_name_their_fields_under_body(hook_client: httpx.AsyncClient) -> None:
    """A webhook's 422 locates what it refuses as any request validation does."""
    no_payload = await send(hook_client, {"event_action": "trigger", "dedup_key": "k-422"})
    assert no_payload.status_code == 422
    assert [e["field"] for e in no_payload.json()["errors"]] == ["body.payload"]
    no_key = await send(hook_client, {"event_action": "resolve"})
    assert [e["field"] for e in no_key.json()["errors"]] == ["body.dedup_key"]
    bad = await send(hook_client, {**trigger("k-422"), "event_action": "explode"})
    assert [e["field"] for e in bad.json()["errors"]] == ["body.event_action"]
