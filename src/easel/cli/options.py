"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from easel.settings import Settings
from easel.storage.database import Database

DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Where images, keys and the database live (env EASEL_DATA_DIR; default: the per-user "
        "data directory).",
        show_default=False,
    ),
]

DatabaseUrlOption = Annotated[
    Optional[str],
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the database, e.g. postgresql://user:pass@host/easel (env "
        "EASEL_DATABASE_URL; default: SQLite in the data directory).",
        show_default=False,
    ),
]


def cli_settings(data_dir: Optional[Path], database_url: Optional[str]) -> Settings:
    """Settings from the environment, with the command's --data-dir and --database-url on top."""
    settings = Settings()
    if data_dir is not None:
        settings.data_dir = data_dir
    if database_url is not None:
        settings.database_url = database_url
    return settings


def open_database(data_dir: Optional[Path], database_url: Optional[str]) -> Database:
    return Database(cli_settings(data_dir, database_url).resolved_database_url)


ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML file adding or changing catalog models."),
]

ModelSourceOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--model-source",
        help="NAME=HUB_ID_OR_DIR: take NAME's pipeline from here (as `easel serve --model`). "
        "Repeatable.",
    ),
]
