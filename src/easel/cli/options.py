"""Options shared by several commands, and the settings they make."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from easel.cli.setting_options import setting_option, settings_from_flags
from easel.db.database import Database
from easel.settings import Settings

# Setting flags take text: Settings parses it (see cli/setting_options.py).
DataDirOption = Annotated[str | None, setting_option("data_dir")]
DatabaseUrlOption = Annotated[str | None, setting_option("database_url")]
StorageOption = Annotated[str | None, setting_option("storage")]
PublicBaseUrlOption = Annotated[str | None, setting_option("public_base_url")]
UrlTtlOption = Annotated[str | None, setting_option("url_ttl_seconds")]


def cli_settings(data_dir: str | None, database_url: str | None) -> Settings:
    """Settings from the environment, with the command's --data-dir and --database-url on top."""
    return settings_from_flags(None, data_dir=data_dir, database_url=database_url)


def open_database(data_dir: str | None, database_url: str | None) -> Database:
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
ModelSourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-source",
        help="NAME=HUB_ID_OR_DIR: take NAME's pipeline from here (as `easel serve --model`). "
        "Repeatable.",
    ),
]
LogLevelOption = Annotated[str, typer.Option(help="debug, info, warning or error.")]
