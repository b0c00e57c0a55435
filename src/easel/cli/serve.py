"""`easel serve`: run the HTTP server."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer
import uvicorn
from rich.console import Console

from easel.api.app import create_app
from easel.api.context import RequestIdLogFilter
from easel.catalog.catalog import Catalog, CatalogConfigError
from easel.cli.options import (
    ConfigOption,
    DataDirOption,
    LogLevelOption,
    ModelOption,
    PublicBaseUrlOption,
    StorageOption,
    UrlTtlOption,
    settings_with,
)

err = Console(stderr=True)


def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (env EASEL_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (env EASEL_PORT).")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    storage: StorageOption = None,
    public_base_url: PublicBaseUrlOption = None,
    url_ttl: UrlTtlOption = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Serve the OpenAI-compatible API."""
    configure_logging(log_level)
    settings = settings_with(
        data_dir=data_dir,
        host=host,
        port=port,
        storage=storage,
        public_base_url=public_base_url,
        url_ttl_seconds=url_ttl,
    )
    try:
        catalog = Catalog.build(config, model or ())
        app = create_app(settings, catalog)
    except (CatalogConfigError, ValueError) as exc:
        err.print(f"[red]easel serve: {exc}[/red]")
        raise typer.Exit(2) from exc
    if not app.state.services.keys.has_active_keys():
        err.print(
            "[yellow]No API keys yet: every generation request will be refused. Make one with[/yellow]\n"
            f"    easel keys create --data-dir {settings.data_dir}"
        )
    err.print(f"Models: {', '.join(catalog.names())}. Data directory: {settings.data_dir}")
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
