"""Ingestion routes: the Alertmanager receiver and the generic signed webhook.

The contract with Alertmanager (it retries 5xx and network errors, and drops the
notification on any 4xx): a valid payload gets 2xx, always, duplicates included;
overload and outages get 503; only a payload we could never store gets 400/422,
and a body over the limit 413.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Annotated, Any, Final

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from redis.asyncio import Redis
from starlette.responses import Response

from firewatch.alerts import alertmanager, service, webhook
from firewatch.alerts.alertmanager import PayloadError
from firewatch.auth.dependencies import request_client
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import Permission, require
from firewatch.errors import (
    BadRequestError,
    ConflictError,
    FirewatchError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    UnprocessableError,
    field_errors,
)
from firewatch.events import service as events
from firewatch.http import deps
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.incidents.model import display_ref, parse_ref
from firewatch.notifications.model import verify_signature
from firewatch.observability import metrics, tracing
from firewatch.runtime.database import PgPool
from firewatch.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["integrations"])

Ingester = Annotated[Principal, require(Permission.ALERTS_WRITE)]
Reader = Annotated[Principal, require(Permission.INCIDENTS_READ)]
Pool = Annotated[PgPool, Depends(deps.pool)]
RedisDep = Annotated[Redis, Depends(deps.redis_client)]
SettingsDep = Annotated[Settings, Depends(deps.settings)]

# Transient database conditions that a retry resolves: answered 503 so that
# Alertmanager (and any sender) tries again instead of dropping the alerts.
_RETRYABLE_DB = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _payload_error(exc: PayloadError) -> FirewatchError:
    if exc.status == 400:
        return BadRequestError(exc.detail)
    return UnprocessableError(exc.detail, errors=exc.errors or field_errors(exc.detail, "body"))


def _unavailable() -> UnavailableError:
    return UnavailableError("firewatch cannot store alerts right now; retry shortly", retry_after=5)


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its ``$defs`` put in place: in /openapi.json a ``#/$defs/Alert``
    reference resolves against the whole document, where there is no such thing."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


_AM_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _inlined(alertmanager.Notification.model_json_schema(by_alias=True))
            }
        },
    }
}


@router.post(
    "/integrations/alertmanager",
    summary="Alertmanager webhook receiver (payload version 4)",
    openapi_extra=_AM_SCHEMA,
)
async def alertmanager_receiver(
    request: Request, caller: Ingester, pool: Pool, redis: RedisDep, settings: SettingsDep
) -> Response:
    body = await request.body()
    try:
        payload = alertmanager.parse(body, max_alerts=settings.alert_max_per_payload)
    except PayloadError as exc:
        raise _payload_error(exc) from None
    try:
        with tracing.ingest_span("alertmanager", alerts=len(payload.alerts)):
            result = await service.ingest_group(
                pool,
                caller,
                service.group_from_alertmanager(payload),
                service.policy_from_settings(settings),
            )
    except _RETRYABLE_DB:
        raise _unavailable() from None
    _after_commit(result, "alertmanager")
    await events.publish(redis, result.events)
    # ``status`` is the incident's status after the delivery (None: nothing opened)
    return JSONResponse(result.summary())


def _after_commit(result: service.IngestResult, source: str) -> None:
    metrics.record_alerts_ingested(result.alerts, source)
    if result.created and result.severity is not None:
        metrics.record_incident_opened(result.severity)


def _header_int(value: str | None, name: str) -> int:
    if value is None:
        raise UnauthorizedError(f"missing {name} header")
    try:
        return int(value)
    except ValueError:
        raise UnauthorizedError(f"{name} must be a Unix timestamp in seconds") from None


NONCE_PREFIX = "firewatch:webhook-nonce:"
#: Never configured anywhere, new at every start: nothing can be signed with it.
_UNKNOWN_INTEGRATION_SECRET: Final = secrets.token_hex(32)


@router.post(
    "/integrations/webhook/{integration}",
    status_code=202,
    summary="Generic signed webhook (PagerDuty Events v2 semantics)",
)
async def signed_webhook(
    integration: str,
    request: Request,
    pool: Pool,
    redis: RedisDep,
    settings: SettingsDep,
    x_firewatch_timestamp: Annotated[str | None, Header()] = None,
    x_firewatch_signature: Annotated[str | None, Header()] = None,
) -> Response:
    body = await request.body()
    secret = settings.webhook_secrets.get(integration)
    timestamp = _header_int(x_firewatch_timestamp, "X-Firewatch-Timestamp")
    if abs(time.time() - timestamp) > settings.webhook_tolerance:
        raise UnauthorizedError(
            f"the request is older than {settings.webhook_tolerance} seconds (or from the "
            "future): sign each request with the current time"
        )
    # An unknown integration is checked against a throwaway secret: the same answer and
    # the same HMAC over the body as a bad signature, so neither the reply nor its
    # timing tells a prober which integration names exist.
    key = _UNKNOWN_INTEGRATION_SECRET if secret is None else secret.get_secret_value()
    if (
        x_firewatch_signature is None
        or not verify_signature(key, timestamp, body, x_firewatch_signature)
        or secret is None
    ):
        raise UnauthorizedError("the signature does not match this integration's secret")
    try:
        event = webhook.parse(body)
    except PayloadError as exc:
        raise _payload_error(exc) from None
    digest = hashlib.sha256(f"{integration}\n{timestamp}\n".encode() + body).hexdigest()
    nonce = f"{NONCE_PREFIX}{digest}"
    if not await redis.set(nonce, b"1", nx=True, ex=2 * settings.webhook_tolerance + 60):
        raise ConflictError("this request was already received (replay refused)")
    policy = service.policy_from_settings(settings)
    dedup_key = event.dedup_key or webhook.new_dedup_key()
    try:
        with tracing.ingest_span("webhook", alerts=1):
            # the integration, authenticated by its signature, is who made the change
            caller = Principal(
                subject=f"webhook:{integration}",
                kind="integration",
                role="integration",
                client=request_client(request),
            )
            result = await _webhook_event(pool, caller, integration, event, dedup_key, policy)
    except Exception as exc:
        # Not stored: forget the nonce so the sender's retry is not taken for a replay.
        await redis.delete(nonce)
        if isinstance(exc, _RETRYABLE_DB):
            raise _unavailable() from None
        raise
    _after_commit(result, "webhook")
    await events.publish(redis, result.events)
    return JSONResponse({"dedup_key": dedup_key, **result.summary()}, status_code=202)


async def _webhook_event(
    pool: PgPool,
    caller: Principal,
    integration: str,
    event: webhook.Event,
    dedup_key: str,
    policy: service.IngestPolicy,
) -> service.IngestResult:
    if event.event_action == "acknowledge":
        return await service.acknowledge_group(
            pool,
            caller,
            source=webhook.source_of(integration),
            group_key=dedup_key,
            policy=policy,
        )
    return await service.ingest_group(
        pool,
        caller,
        webhook.to_group(integration, event, dedup_key),
        policy,
        auto_resolve=True if event.event_action == "resolve" else None,
    )


@router.get(
    "/incidents/{ref}/alerts",
    tags=["incidents"],
    summary="The alerts grouped into an incident (oldest first)",
)
async def incident_alerts(
    ref: str,
    caller: Reader,
    pool: Pool,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    incident_id = parse_ref(ref)
    if incident_id is None:
        raise NotFoundError(f"{ref!r} is not an incident reference (expected INC-<n>)")
    after_id = decode_cursor(cursor) if cursor else 0
    rows = await service.list_alerts(pool, incident_id, after_id=after_id, limit=limit)
    items = []
    for row in rows:
        item = dict(row)
        item["incident_id"] = display_ref(row["incident_id"])
        items.append(item)
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": items, "next_cursor": nxt})
