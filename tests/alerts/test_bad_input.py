"""Bad input gets a clear problem+json answer and stores nothing, not even half."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from firewatch.runtime.database import PgPool
from tests.alerts.conftest import load_fixture, with_group

URL = "/api/v1/integrations/alertmanager"


async def counts(pool: PgPool) -> tuple[int, int, int]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM incidents) AS i, (SELECT count(*) FROM alerts) AS a, "
            "(SELECT count(*) FROM incident_timeline) AS t"
        )
    assert row is not None
    return row["i"], row["a"], row["t"]


def payload_with(group_key: str, **changes: Any) -> dict[str, Any]:
    payload = with_group(load_fixture("firing-group-of-two.json"), group_key)
    payload.update(changes)
    return payload


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def test_malformed_json(client: httpx.AsyncClient, pool: PgPool) -> None:
    before = await counts(pool)
    body = problem(await client.post(URL, content=b'{"version": "4", "alerts": ['), 400)
    assert "not valid JSON" in body["detail"]
    problem(await client.post(URL, content=b"\xff\xfe garbage"), 400)
    assert await counts(pool) == before


async def test_not_an_object(client: httpx.AsyncClient) -> None:
    body = problem(await client.post(URL, content=b"[1, 2]"), 422)
    assert "JSON object" in body["detail"]


async def test_wrong_version(client: httpx.AsyncClient, pool: PgPool, group_key: str) -> None:
    before = await counts(pool)
    body = problem(await client.post(URL, json=payload_with(group_key, version="3")), 422)
    assert "version" in body["detail"]
    assert await counts(pool) == before
    # the rejected value is never echoed (README, Errors)
    secret = "v-s3cr3t-value"
    body = problem(await client.post(URL, json=payload_with(group_key, version=secret)), 422)
    assert secret not in orjson.dumps(body).decode()


async def test_wrong_types_name_the_field(
    client: httpx.AsyncClient, pool: PgPool, group_key: str
) -> None:
    before = await counts(pool)
    payload = payload_with(group_key)
    payload["alerts"][1]["startsAt"] = 12
    payload["alerts"][0]["labels"] = ["not", "a", "map"]
    body = problem(await client.post(URL, json=payload), 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"body.alerts.1.startsAt", "body.alerts.0.labels"} <= fields
    assert await counts(pool) == before


async def test_body_over_limit_is_413(client: httpx.AsyncClient, pool: PgPool) -> None:
    before = await counts(pool)
    big = b'{"version": "4", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    problem(await client.post(URL, content=big), 413)
    assert await counts(pool) == before


async def test_ten_thousand_alerts(client: httpx.AsyncClient, pool: PgPool, group_key: str) -> None:
    before = await counts(pool)
    template = load_fixture("firing-single.json")["alerts"][0]
    alerts = [
        {**template, "fingerprint": f"{i:016x}", "labels": {"alertname": "A", "i": str(i)}}
        for i in range(10_000)
    ]
    body = orjson.dumps(payload_with(group_key, alerts=alerts))
    # Over the default 1 MiB body limit: refused before it is even parsed.
    problem(await client.post(URL, content=body), 413)
    # Within the byte limit but over the alert limit: refused, naming the setting.
    small = [
        {
            "status": "firing",
            "labels": {},
            "startsAt": "2026-11-27T00:00:00Z",
            "fingerprint": f"{i:x}",
        }
        for i in range(1001)
    ]
    r = await client.post(URL, content=orjson.dumps(payload_with(group_key, alerts=small)))
    detail = problem(r, 422)["detail"]
    assert "max_alerts" in detail
    assert await counts(pool) == before


@pytest.mark.parametrize(
    "value",
    ["line\nbreak", "nul\x00byte", "bell\x07", "x" * 100_000],
    ids=["newline", "nul", "control", "100kB"],
)
async def test_bad_label_values(
    client: httpx.AsyncClient, pool: PgPool, group_key: str, value: str
) -> None:
    before = await counts(pool)
    payload = payload_with(group_key)
    # The first alert is fine: a half-stored payload would keep it.
    payload["alerts"][1]["labels"]["model"] = value
    body = problem(await client.post(URL, json=payload), 422)
    assert body["errors"][0]["field"] == "body.alerts.1.labels.model"
    assert value[:50] not in r_text(body)  # the rejected value is never echoed
    assert await counts(pool) == before


def r_text(body: dict[str, Any]) -> str:
    return orjson.dumps(body).decode()


async def test_empty_alerts_refused(client: httpx.AsyncClient, group_key: str) -> None:
    problem(await client.post(URL, json=payload_with(group_key, alerts=[])), 422)
