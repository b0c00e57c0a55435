"""`easel serve`: run the HTTP server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from easel.api.context import RequestIdLogFilter
from easel.catalog.catalog import Catalog, CatalogConfigError
from easel.cli.options import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    LogLevelOption,
    ModelOption,
    PublicBaseUrlOption,
    StorageOption,
    UrlTtlOption,
    settings_with,
)
from easel.observability.logs import JsonFormatter, TextFormatter
from easel.settings import Settings

err = Console(stderr=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (env EASEL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env EASEL_PORT).")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    storage: StorageOption = None,
    public_base_url: PublicBaseUrlOption = None,
    url_ttl: UrlTtlOption = None,
    database_url: DatabaseUrlOption = None,
    log_level: LogLevelOption = "info",
    log_format: Annotated[
        str | None,
        typer.Option(
            help="json (one object per line, the default) or text (env EASEL_LOG_FORMAT)."
        ),
    ] = None,
    log_prompts: Annotated[
        bool | None,
        typer.Option(
            "--log-prompts/--no-log-prompts",
            help="Put prompts in the log (env EASEL_LOG_PROMPTS; off by default).",
            show_default=False,
        ),
    ] = None,
    queue_images: Annotated[
        int | None,
        typer.Option(
            help="Images that may wait per model; more get 429 (env EASEL_QUEUE_IMAGES, 64)."
        ),
    ] = None,
    batch_images: Annotated[
        int | None,
        typer.Option(help="Most images in one pipeline call (env EASEL_BATCH_IMAGES, 8)."),
    ] = None,
    batch_pixels: Annotated[
        int | None,
        typer.Option(
            help="Most generated pixels in one pipeline call (env EASEL_BATCH_PIXELS, 8388608)."
        ),
    ] = None,
    batch_wait_ms: Annotated[
        float | None,
        typer.Option(
            help="Longest wait for compatible requests when idle (env EASEL_BATCH_WAIT_MS, 5)."
        ),
    ] = None,
    adaptive_batch_size: Annotated[
        bool | None,
        typer.Option(
            "--adaptive-batch-size/--fixed-batch-size",
            help="Limit batches to the size measured fastest within the budgets, or always fill "
            "them (env EASEL_ADAPTIVE_BATCH_SIZE, on).",
        ),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            help="Seconds a request may take before it is cancelled with 504; 0: none "
            "(env EASEL_DEADLINE_SECONDS, 600)."
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            help="Open connections; beyond, the one idle longest is closed or the new one gets "
            "503 (env EASEL_MAX_CONNECTIONS, 512)."
        ),
    ] = None,
    max_header_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request line and headers; larger get 431 (env EASEL_MAX_HEADER_BYTES, "
            "16384)."
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to send a request's head (env EASEL_HEADER_TIMEOUT_SECONDS, 20)."
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to send a request's body; later, 408 (env EASEL_BODY_TIMEOUT_SECONDS, "
            "60)."
        ),
    ] = None,
    api_docs: Annotated[
        bool | None,
        typer.Option(
            "--api-docs/--no-api-docs",
            help="Serve /docs and /openapi.json (env EASEL_API_DOCS; off by default).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API. The admin API is enabled by EASEL_ADMIN_KEY."""
    settings = settings_with(
        data_dir=data_dir,
        host=host,
        port=port,
        storage=storage,
        public_base_url=public_base_url,
        url_ttl_seconds=url_ttl,
        database_url=database_url,
        log_format=log_format,
        log_prompts=log_prompts,
        queue_images=queue_images,
        batch_images=batch_images,
        batch_pixels=batch_pixels,
        batch_wait_ms=batch_wait_ms,
        adaptive_batch_size=adaptive_batch_size,
        deadline_seconds=deadline,
        max_connections=max_connections,
        max_header_bytes=max_header_bytes,
        header_timeout_seconds=header_timeout,
        body_timeout_seconds=body_timeout,
        api_docs=api_docs,
    )
    configure_logging(log_level, settings.log_format)
    # Imported here so `easel keys`, `usage` and `db` start without loading PyTorch.
    from easel.api.app import create_app
    from easel.api.connections import ConnectionLimits, bounded_protocol

    try:
        catalog = Catalog.build(config, model or ())
        app = create_app(settings, catalog)
    except (CatalogConfigError, ValueError) as exc:
        err.print(f"[red]easel serve: {exc}[/red]")
        raise typer.Exit(2) from exc
    except SQLAlchemyError as exc:
        err.print(f"[red]easel serve: cannot open the database {_shown(settings)}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if not app.state.services.keys.has_active_keys():
        err.print(
            "[yellow]No API keys yet: every generation request will be refused. "
            "Make one with[/yellow]\n"
            f"    easel keys create --data-dir {settings.data_dir}"
        )
    err.print(
        f"Models: {', '.join(catalog.names())}. Data directory: {settings.data_dir}. "
        f"Database: {_shown(settings)}."
    )
    err.print(f"Web playground: http://{settings.host}:{settings.port}/")
    limits = ConnectionLimits(
        max_connections=settings.max_connections,
        header_timeout_seconds=settings.header_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        http=bounded_protocol(limits),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # No route speaks WebSocket: an upgrade request is served as plain HTTP.
        ws="none",
    )


def configure_logging(level: str, log_format: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    if log_format == "text":
        handler.setFormatter(TextFormatter())
    else:
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _shown(settings: Settings) -> str:
    """The database URL without its password."""
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)
