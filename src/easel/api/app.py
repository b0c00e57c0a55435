"""`create_app`: the FastAPI application, assembled from settings and a catalog, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from easel import __version__
from easel.api import files, models
from easel.api.errors import install_error_handlers
from easel.api.images import router as images
from easel.api.middleware import RequestContextMiddleware
from easel.api.state import AppServices
from easel.catalog import Catalog
from easel.engine.scheduler import SchedulerConfig
from easel.engine.worker import Engine
from easel.settings import Settings
from easel.storage.api_keys import KeyStore
from easel.storage.database import Database
from easel.storage.images import ImageStore

log = logging.getLogger(__name__)


def build_services(settings: Settings, catalog: Catalog) -> AppServices:
    settings.validate()
    database = Database(settings.resolved_database_url)
    return AppServices(
        settings=settings,
        catalog=catalog,
        engine=Engine(catalog, config=scheduler_config(settings)),
        database=database,
        keys=KeyStore(database),
        images=ImageStore(settings.images_dir, settings.signing_secret(), settings.url_ttl_seconds),
    )


def scheduler_config(settings: Settings) -> SchedulerConfig:
    return SchedulerConfig(
        queue_images=settings.queue_images,
        batch_images=settings.batch_images,
        batch_pixels=settings.batch_pixels,
        batch_wait_seconds=settings.batch_wait_ms / 1000,
        deadline_seconds=settings.deadline_seconds or None,
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


def create_app(settings: Settings, catalog: Catalog) -> FastAPI:
    services = build_services(settings, catalog)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.engine.start()
        sweeper = asyncio.create_task(
            _sweep_forever(services.images, settings.sweep_interval_seconds)
        )
        try:
            yield
        finally:
            sweeper.cancel()
            services.engine.shutdown()
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
    return app
