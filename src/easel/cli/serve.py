"""`easel serve`: run the HTTP server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
import uvicorn
from rich.console import Console

from easel.api.app import create_app
from easel.api.context import RequestIdLogFilter
from easel.catalog.catalog import Catalog, CatalogConfigError
from easel.cli.options import DataDirOption
from easel.settings import Settings

err = Console(stderr=True)


def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (env EASEL_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (env EASEL_PORT).")] = None,
    data_dir: DataDirOption = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file adding or changing catalog models.")
    ] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            "--model",
            help="NAME=HUB_ID_OR_DIR: serve NAME from this pipeline (keeps NAME's rules when NAME "
            "is in the catalog). Repeatable.",
        ),
    ] = None,
    public_base_url: Annotated[
        Optional[str],
        typer.Option(help="Absolute URL clients reach the server by (env EASEL_PUBLIC_BASE_URL)."),
    ] = None,
    url_ttl: Annotated[
        Optional[int],
        typer.Option("--url-ttl", help="Seconds an image URL stays valid (env EASEL_URL_TTL_SECONDS)."),
    ] = None,
    queue_images: Annotated[
        Optional[int],
        typer.Option(
            help="Images that may wait per model; more get 429 (env EASEL_QUEUE_IMAGES, 64)."
        ),
    ] = None,
    batch_images: Annotated[
        Optional[int],
        typer.Option(help="Most images in one pipeline call (env EASEL_BATCH_IMAGES, 8)."),
    ] = None,
    batch_pixels: Annotated[
        Optional[int],
        typer.Option(
            help="Most generated pixels in one pipeline call (env EASEL_BATCH_PIXELS, 8388608)."
        ),
    ] = None,
    batch_wait_ms: Annotated[
        Optional[float],
        typer.Option(
            help="Longest wait for compatible requests when idle (env EASEL_BATCH_WAIT_MS, 5)."
        ),
    ] = None,
    deadline: Annotated[
        Optional[float],
        typer.Option(
            help="Seconds a request may take before it is cancelled with 504; 0: none "
            "(env EASEL_DEADLINE_SECONDS, 600)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the OpenAI-compatible API."""
    _configure_logging(log_level)
    settings = Settings()
    overrides = {
        "data_dir": data_dir,
        "host": host,
        "port": port,
        "public_base_url": public_base_url,
        "url_ttl_seconds": url_ttl,
        "queue_images": queue_images,
        "batch_images": batch_images,
        "batch_pixels": batch_pixels,
        "batch_wait_ms": batch_wait_ms,
        "deadline_seconds": deadline,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
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


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
