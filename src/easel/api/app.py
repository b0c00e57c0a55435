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
from easel.api.body_timeout import BodyTimeoutMiddleware
from easel.api.errors import install_error_handlers
from easel.api.images import edits
from easel.api.images import router as images
from easel.api.middleware import RequestContextMiddleware
from easel.api.state import AppServices
from easel.background import cancel_and_wait
from easel.catalog import Catalog
from easel.db.database import Database
from easel.engine.engine import Engine
from easel.engine.matting import Matting, MattingModel
from easel.engine.types import ImageEngine
from easel.keys.store import KeyStore
from easel.limits.limiter import Limiter
from easel.observability import metrics
from easel.prompts.language import load_language_model
from easel.prompts.rewriter import open_rewriter
from easel.settings import Settings
from easel.storage.images import ImageStore, open_image_store
from easel.usage.store import UsageStore
from easel.usage.writer import UsageWriter

log = logging.getLogger(__name__)


def build_services(
    settings: Settings,
    catalog: Catalog,
    engine: ImageEngine | None = None,
    matting: Matting | None = None,
) -> AppServices:
    """The app's parts. `engine` defaults to an in-process engine and `matting` to an in-process
    matting model where the settings name one; the Ray Serve ingress passes proxies to its
    deployments instead: the only difference between the two ways to run."""
    images = open_image_store(settings)
    database = Database(settings.resolved_database_url)
    usage = UsageStore(database)
    if engine is None:
        engine = Engine(catalog, config=settings.scheduler_config())
    # In process, the matting model and the prompt rewriter share the pipelines' device and
    # memory budget; beside a cluster's replicas the rewriter runs in the ingress on its device.
    budget = engine.memory_budget if isinstance(engine, Engine) else None
    if matting is None and settings.matting_model:
        matting = MattingModel(settings.matting_model, engine.device, budget)
    return AppServices(
        settings=settings,
        catalog=catalog,
        engine=engine,
        database=database,
        keys=KeyStore(database),
        images=images,
        limiter=Limiter(database, reservation_ttl_seconds=settings.reservation_ttl_seconds),
        usage=usage,
        usage_writer=UsageWriter(usage),
        matting=matting,
        prompt_rewriter=open_rewriter(
            settings.prompt_rewriter,
            model=settings.prompt_rewriter_model,
            timeout_seconds=settings.prompt_rewrite_timeout_seconds,
            log_prompts=settings.log_prompts,
            device=engine.device,
            budget=budget,
        ),
    )


async def _sweep_forever(store: ImageStore, interval: float) -> None:
    while True:
        try:
            removed = await asyncio.to_thread(store.sweep)
            if removed:
                log.info("deleted %d expired images", removed)
        except Exception:  # a disk or object-store hiccup must not stop later sweeps
            log.exception("image sweep failed")
        await asyncio.sleep(interval)


async def _sweep_limits_forever(limiter: Limiter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(limiter.sweep)
        except Exception:  # the database may be briefly away; the next sweep catches up
            log.exception("sweeping expired quota reservations failed")


def create_app(
    settings: Settings,
    catalog: Catalog,
    *,
    engine: ImageEngine | None = None,
    matting: Matting | None = None,
    proxy_sets_request_id: bool = False,
) -> FastAPI:
    services = build_services(settings, catalog, engine, matting)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.engine.start()
        # Every prompt's checks detect its language: the model loads here, not on the loop.
        await asyncio.to_thread(load_language_model)
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
            await cancel_and_wait(*sweepers)
            await services.engine.shutdown()
            # Requests have been answered by now: store every usage record before closing.
            await asyncio.to_thread(services.usage_writer.close)
            metrics.unregister(collector)
            if services.prompt_rewriter is not None:
                await services.prompt_rewriter.close()
            services.images.close()
            services.database.close()

    app = FastAPI(
        title="Easel",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    app.add_middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout_seconds)
    app.add_middleware(RequestContextMiddleware, proxy_sets_request_id=proxy_sets_request_id)
    app.include_router(images.router)
    app.include_router(edits.router)
    app.include_router(models.router)
    app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    web.install(app)
    return app
