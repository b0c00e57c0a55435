"""`create_app`: the FastAPI application, assembled from settings and a catalog, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from easel import __version__, web
from easel.api import admin, files, health, models
from easel.api.errors import install_error_handlers
from easel.api.images import router as images
from easel.api.middleware import RequestContextMiddleware
from easel.api.state import AppServices
from easel.catalog import Catalog
from easel.engine.worker import Engine
from easel.limits.limiter import Limiter
from easel.observability import metrics
from easel.settings import Settings
from easel.storage.api_keys import KeyStore
from easel.storage.database import Database
from easel.storage.images import ImageStore
from easel.storage.usage import UsageStore
from easel.storage.usage_writer import UsageWriter

log = logging.getLogger(__name__)


def build_services(settings: Settings, catalog: Catalog) -> AppServices:
    settings.validate()
    database = Database(settings.resolved_database_url)
    usage = UsageStore(database)
    return AppServices(
        settings=settings,
        catalog=catalog,
        engine=Engine(catalog),
        database=database,
        keys=KeyStore(database),
        images=ImageStore(settings.images_dir, settings.signing_secret(), settings.url_ttl_seconds),
        limiter=Limiter(database, reservation_ttl_seconds=settings.reservation_ttl_seconds),
        usage=usage,
        usage_writer=UsageWriter(usage),
    )


async def _sweep_forever(store: ImageStore, interval: float) -> None:
    while True:
        try:
            removed = await asyncio.to_thread(store.sweep)
            if removed:
                log.info("deleted %d expired images", removed)
        except OSError:
            log.exception("image sweep failed")
        await asyncio.sleep(interval)


async def _sweep_limits_forever(limiter: Limiter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(limiter.sweep)
        except Exception:  # the database may be briefly away; the next sweep catches up
            log.exception("sweeping expired quota reservations failed")


def create_app(settings: Settings, catalog: Catalog) -> FastAPI:
    services = build_services(settings, catalog)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.engine.start()
        services.usage_writer.start()
        collector = metrics.register_engine(services.engine)
        sweepers = [
            asyncio.create_task(_sweep_forever(services.images, settings.sweep_interval_seconds)),
            asyncio.create_task(
                _sweep_limits_forever(services.limiter, settings.sweep_interval_seconds)
            ),
        ]
        try:
            yield
        finally:
            for sweeper in sweepers:
                sweeper.cancel()
            services.engine.shutdown()
            # Requests have been answered by now: store every usage record before closing.
            await asyncio.to_thread(services.usage_writer.close)
            metrics.unregister(collector)
            services.database.close()

    app = FastAPI(
        title="Easel",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(images.router)
    app.include_router(models.router)
    app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    web.install(app)
    return app
