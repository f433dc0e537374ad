"""create_app(settings): wiring and lifespan only."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from firewatch import __version__
from firewatch.alerts import api as alerts_api
from firewatch.analytics import api as analytics_api
from firewatch.audit import api as audit_api
from firewatch.audit.service import run_sealer
from firewatch.auth import api as auth_api
from firewatch.auth.runtime import AuthState
from firewatch.detection import api as detection_api
from firewatch.detection.similar_service import SimilarState
from firewatch.events import api as events_api
from firewatch.http import health, problems
from firewatch.http.body_limit import BodyLimitMiddleware
from firewatch.http.responses import JSONResponse
from firewatch.http.routes import add_routes
from firewatch.http.security import SecurityHeadersMiddleware
from firewatch.incidents import api as incidents_api
from firewatch.incidents import service as incidents_service
from firewatch.notifications import api as notifications_api
from firewatch.notifications import service as notifications_service
from firewatch.observability import api as observability_api
from firewatch.observability import metrics, tracing
from firewatch.observability.logging import configure_logging
from firewatch.observability.middleware import ObservabilityMiddleware
from firewatch.observability.redact import Pseudonymizer
from firewatch.runtime import migrations
from firewatch.runtime.database import create_pool
from firewatch.runtime.redis import create_redis
from firewatch.settings import Settings, load_settings

log = structlog.get_logger(__name__)


def _freeze_startup_objects() -> None:
    """Put everything alive after start-up (modules, the app, pools, models) beyond the
    garbage collector's reach, so that a full collection walks only what came later.

    Without it, every ~1 s under load an oldest-generation collection walked the ~1M
    objects that FastAPI, pydantic, SQLAlchemy/Alembic, scikit-learn and the OTel SDK
    leave behind, with the event loop stopped for ~90 ms: every request in flight
    waited (GET incident p99 ~95 ms against a p50 of ~8 ms; ``gc.callbacks`` timing
    in the server under ``make bench BENCH=auth``). ``gc.collect()`` first, so no
    start-up garbage is frozen with the rest; the lifespan unfreezes at shutdown.
    """
    gc.collect()
    gc.freeze()


def routers(settings: Settings) -> list[APIRouter]:
    """The app's routers, in the order requests are matched against them: the incidents
    router first, since GET incident is the hottest route (no two routers can serve
    the same request, so the order decides no answer: tests/http/test_routes.py)."""
    out = [
        incidents_api.router,
        health.router,
        analytics_api.router,
        alerts_api.router,
        events_api.router,
        auth_api.router,
        audit_api.router,
        detection_api.router,
        detection_api.similar_router,
        notifications_api.router,
    ]
    if settings.metrics_enabled:
        out.append(observability_api.router)
    return out


def create_app(settings: Settings) -> FastAPI:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs resolved database and Redis URLs (see cli.serve)")
    database_url = settings.database_url.get_secret_value()
    redis_url = settings.redis_url.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrations.upgrade(database_url)
        app.state.pool = await create_pool(
            database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            command_timeout=settings.db_command_timeout,
        )
        app.state.creates = incidents_service.CreateBatcher(app.state.pool)
        app.state.redis = create_redis(redis_url)
        app.state.auth = AuthState.build(settings, app.state.redis)
        sealer = asyncio.create_task(
            run_sealer(app.state.pool, settings.audit_seal_interval), name="audit-sealer"
        )
        # similar incidents: this app's own index for /similar (never shared across
        # event loops); suggestions for new incidents come from the suggester process
        # that `firewatch serve` starts (detection/suggester.py)
        app.state.similar = SimilarState()
        log.info("firewatch started", version=__version__)
        _freeze_startup_objects()
        # alert ingestion: the notification/retention worker, when run inside serve
        worker = None
        if settings.worker_in_serve:
            worker = asyncio.create_task(
                notifications_service.Worker(
                    app.state.pool, notifications_service.config_from_settings(settings)
                ).run()
            )
        try:
            yield
        finally:
            sealer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sealer
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await app.state.auth.revocations.aclose()
            await app.state.redis.aclose()
            await app.state.pool.close()
            tracing.shutdown()
            metrics.flush_requests()  # the last second's requests, into the shared files
            gc.unfreeze()  # collectable again (an app stopped inside a longer-lived process)

    app = FastAPI(
        title="firewatch",
        version=__version__,
        summary="Incident tracker for ML and data platform teams",
        default_response_class=JSONResponse,
        responses=problems.RESPONSES,  # errors are documented as what they are
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry=tracing.fastapi_telemetry(),  # off: ServerSpan (middleware) makes them
    )
    app.state.settings = settings
    problems.install(app)
    for router in routers(settings):
        add_routes(app, router)  # not include_router: see http/routes.py
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # off by default: only listed origins, never "*"
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Location", "Retry-After"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(
        SecurityHeadersMiddleware,
        trusted_proxies=settings.trusted_proxies,
        hsts_max_age=settings.hsts_max_age,
    )
    # observability: outermost of ours, so it times and logs every answer (413s too)
    key = settings.log_pseudonym_key
    app.add_middleware(
        ObservabilityMiddleware,
        pseudonymizer=Pseudonymizer(key.get_secret_value().encode() if key else None),
        metrics_enabled=settings.metrics_enabled,
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings (with resolved URLs) come from the env."""
    settings = load_settings()
    # Workers are spawned processes: logging configured in the master does not carry over.
    configure_logging(settings.log_level, settings.log_format)
    tracing.configure(__version__)  # from the OTEL_* variables; off unless asked for
    return create_app(settings)
