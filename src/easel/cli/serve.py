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
)
from easel.cli.setting_options import setting_option, settings_from_flags
from easel.observability.logs import JsonFormatter, TextFormatter
from easel.settings import Settings

err = Console(stderr=True)
log = logging.getLogger(__name__)


def serve(
    host: Annotated[str | None, setting_option("host")] = None,
    port: Annotated[str | None, setting_option("port")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    storage: StorageOption = None,
    public_base_url: PublicBaseUrlOption = None,
    url_ttl_seconds: UrlTtlOption = None,
    database_url: DatabaseUrlOption = None,
    log_level: LogLevelOption = "info",
    log_format: Annotated[str | None, setting_option("log_format")] = None,
    log_prompts: Annotated[bool | None, setting_option("log_prompts")] = None,
    queue_images: Annotated[str | None, setting_option("queue_images")] = None,
    batch_images: Annotated[str | None, setting_option("batch_images")] = None,
    batch_pixels: Annotated[str | None, setting_option("batch_pixels")] = None,
    batch_wait_ms: Annotated[str | None, setting_option("batch_wait_ms")] = None,
    adaptive_batch_size: Annotated[bool | None, setting_option("adaptive_batch_size")] = None,
    deadline_seconds: Annotated[str | None, setting_option("deadline_seconds")] = None,
    memory_budget: Annotated[str | None, setting_option("memory_budget")] = None,
    max_connections: Annotated[str | None, setting_option("max_connections")] = None,
    max_header_bytes: Annotated[str | None, setting_option("max_header_bytes")] = None,
    header_timeout_seconds: Annotated[str | None, setting_option("header_timeout_seconds")] = None,
    body_timeout_seconds: Annotated[str | None, setting_option("body_timeout_seconds")] = None,
    api_docs: Annotated[bool | None, setting_option("api_docs")] = None,
    prompt_rewriter: Annotated[str | None, setting_option("prompt_rewriter")] = None,
    prompt_rewriter_model: Annotated[str | None, setting_option("prompt_rewriter_model")] = None,
) -> None:
    """Serve the OpenAI-compatible API. The admin API is enabled by EASEL_ADMIN_KEY."""
    settings = settings_from_flags(
        "serve",
        data_dir=data_dir,
        host=host,
        port=port,
        storage=storage,
        public_base_url=public_base_url,
        url_ttl_seconds=url_ttl_seconds,
        database_url=database_url,
        log_format=log_format,
        log_prompts=log_prompts,
        queue_images=queue_images,
        batch_images=batch_images,
        batch_pixels=batch_pixels,
        batch_wait_ms=batch_wait_ms,
        adaptive_batch_size=adaptive_batch_size,
        deadline_seconds=deadline_seconds,
        memory_budget=memory_budget,
        max_connections=max_connections,
        max_header_bytes=max_header_bytes,
        header_timeout_seconds=header_timeout_seconds,
        body_timeout_seconds=body_timeout_seconds,
        api_docs=api_docs,
        prompt_rewriter=prompt_rewriter,
        prompt_rewriter_model=prompt_rewriter_model,
    )
    configure_logging(log_level, settings.log_format)
    # Imported here so `easel keys`, `usage` and `db` start without loading PyTorch.
    from easel.api.app import create_app
    from easel.api.connections import ConnectionLimits, bounded_protocol
    from easel.engine.device import describe_machine

    try:
        catalog = Catalog.build(config, model or (), describe_machine())
        app = create_app(settings, catalog)
    except (CatalogConfigError, ValueError) as exc:
        err.print(f"[red]easel serve: {exc}[/red]")
        raise typer.Exit(2) from exc
    except SQLAlchemyError as exc:
        err.print(f"[red]easel serve: cannot open the database {_shown(settings)}: {exc}[/red]")
        raise typer.Exit(2) from exc
    if not app.state.services.keys.has_active_keys():
        err.print(
            "[yellow]No API keys yet: every generation request will be refused. Make one "
            "with[/yellow]\n"
            f"    easel keys create --data-dir {settings.data_dir}"
        )
    log_choices(catalog)
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


def log_choices(catalog: Catalog) -> None:
    """One line per model: what it runs and why."""
    for spec in catalog:
        decoder = "" if spec.decoder is None else f" (decoder {spec.decoder})"
        log.info("model %s: %s%s; %s", spec.name, spec.source, decoder, catalog.origin(spec.name))


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
