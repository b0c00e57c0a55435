"""Options shared by several commands, and the settings they make."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from easel.db.database import Database
from easel.settings import Settings

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where images, keys and the database live (env EASEL_DATA_DIR; default: the per-user "
        "data directory).",
        show_default=False,
    ),
]

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the database, e.g. postgresql://user:pass@host/easel (env "
        "EASEL_DATABASE_URL; default: SQLite in the data directory).",
        show_default=False,
    ),
]


def cli_settings(data_dir: Path | None, database_url: str | None) -> Settings:
    """Settings from the environment, with the command's --data-dir and --database-url on top."""
    return settings_with(data_dir=data_dir, database_url=database_url)


def open_database(data_dir: Path | None, database_url: str | None) -> Database:
    return Database(cli_settings(data_dir, database_url).resolved_database_url)


ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML file adding or changing catalog models.")
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="NAME=HUB_ID_OR_DIR: serve NAME from this pipeline (keeps NAME's rules when NAME "
        "is in the catalog). Repeatable.",
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Where images are kept: s3://BUCKET/PREFIX (an S3-compatible store; endpoint and "
        "credentials from the usual AWS settings such as AWS_ENDPOINT_URL) or a directory "
        "(env EASEL_STORAGE; default: DATA_DIR/images).",
    ),
]
PublicBaseUrlOption = Annotated[
    str | None,
    typer.Option(help="Absolute URL clients reach the server by (env EASEL_PUBLIC_BASE_URL)."),
]
UrlTtlOption = Annotated[
    int | None,
    typer.Option("--url-ttl", help="Seconds an image URL stays valid (env EASEL_URL_TTL_SECONDS)."),
]
ModelSourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-source",
        help="NAME=HUB_ID_OR_DIR: take NAME's pipeline from here (as `easel serve --model`). "
        "Repeatable.",
    ),
]
LogLevelOption = Annotated[str, typer.Option(help="debug, info, warning or error.")]


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, then every flag that was given."""
    settings = Settings()
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    return settings
