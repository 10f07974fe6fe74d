"""The verdict service as an ASGI app.

    app = create_app(load_settings())                       # what `flowguard serve` runs
    app = create_app(settings, store=Store(tmp / "db"), adapter=FakeAdapter(), clock=fake_clock)

The routes are in routes.py, the error shape in schemas.py. Startup (the lifespan, or `start()`
beforehand) checks the firewall adapter and syncs it with the store's active decisions; a background
task then ends expired decisions every `expire_interval`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from http import HTTPStatus
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowguard import __version__
from flowguard.config import Settings
from flowguard.firewall.base import FirewallAdapter
from flowguard.model import CLASSES, FlowClassifier, ModelMetadata, default_model_dir
from flowguard.policy import Policy
from flowguard.service.auth import AuthError, KeyChecker, WriteLimiter
from flowguard.service.bodylimit import BodyLimit
from flowguard.service.feeds import BlocklistCache
from flowguard.service.metrics import Metrics, MetricsMiddleware
from flowguard.service.routes import router
from flowguard.service.schemas import ERROR_RESPONSES, ApiError, describe_validation, error_response
from flowguard.service.state import Service
from flowguard.store import DiskFullError, Store, utcnow

log = logging.getLogger("flowguard.service")

DESCRIPTION = """Stores flow verdicts from `flowguard triage --publish` (or any sender of its JSONL
objects), decides what to block, and publishes it: a firewall adapter, pull lists, and CrowdSec's
decisions stream. Writes need an API key (`X-Api-Key` or `Authorization: Bearer`)."""


def firewall_adapter(settings: Settings) -> FirewallAdapter:
    """The adapter the settings name (ConfigError if it cannot be built)."""
    from flowguard.firewall import make_adapter  # only firewall/ drives firewalls; loaded when needed

    options: dict[str, Any] = {}
    if settings.firewall == "nftables":
        options = {"table": settings.nft_table, "netns": settings.nft_netns}
    elif settings.firewall == "webhook":
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        options = {"url": settings.webhook_url, "secret": secret}
    return make_adapter(settings.firewall, **options)


def load_model(settings: Settings) -> tuple[ModelMetadata, str]:
    """The metadata of the model the settings name (ModelError if it cannot be used)."""
    classifier = FlowClassifier.load(settings.model if settings.model is not None else default_model_dir(),
                                     lazy=True)  # checked; the service predicts nothing itself
    return classifier.metadata, str(classifier.path)


def create_app(
    settings: Settings,
    store: Store | None = None,
    adapter: FirewallAdapter | None = None,
    *,
    model: ModelMetadata | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The service. store: opened from settings when not given (and closed at shutdown);
    adapter: built from settings when not given; model: loaded from settings when not given;
    clock: the time (tests move it). Raises ConfigError, StoreError or ModelError."""
    model_path = None
    if model is None:
        model, model_path = load_model(settings)
    owns_store = store is None
    if store is None:
        store = Store(settings.database)
    if adapter is None:
        adapter = firewall_adapter(settings)
    policy = Policy(settings, store, adapter, model.lowest_thresholds(), clock)
    metrics = Metrics(policy, store, CLASSES, clock)
    info = {**model.to_dict(), "path": model_path}
    service = Service(settings, store, policy, metrics, BlocklistCache(store, clock), info, clock, owns_store)

    app = FastAPI(
        title="flowguard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.service = service
    app.state.keys = KeyChecker(settings)
    app.state.write_limiter = WriteLimiter(settings.write_requests_per_minute, clock)
    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-Api-Key", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Last-Modified"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    log.info("verdict service: database %s, model %s, firewall %s%s, %d API keys%s", store.path,
             model.version, settings.firewall, " (dry run)" if settings.dry_run else "",
             len(settings.api_keys), ", writes accepted without keys" if settings.insecure_no_auth else "")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    await anyio.to_thread.run_sync(service.start)
    task = asyncio.create_task(_expire_forever(service))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        if service.owns_store:
            service.store.close()


async def _expire_forever(service: Service) -> None:
    while True:
        await asyncio.sleep(service.settings.expire_interval)
        try:
            await anyio.to_thread.run_sync(service.policy.tick)
        except Exception:  # keep expiring: one failed round must not stop the loop
            log.exception("expiring decisions failed")


def _install_error_handlers(app: FastAPI) -> None:
    """Every error in the one shape of schemas.ErrorBody."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 404 and exc.detail == "Not Found":
            message = f"not found: {request.url.path}"
        elif status == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path} (allowed: {allowed})"
        else:
            message = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
        return error_response(status, message, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        lines = describe_validation(list(exc.errors()))
        summary = lines[0] if lines else "invalid"
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return error_response(422, f"invalid request: {summary}{more}", lines)

    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(exc.status, exc.message, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.errors)

    @app.exception_handler(DiskFullError)
    async def disk_full(request: Request, exc: DiskFullError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)  # the answer names no path
        return error_response(507, "the database's disk is full: this write was not stored; "
                                   "free space on that disk and retry (reads still work)")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error; the service log has the details")
