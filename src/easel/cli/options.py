"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Where images, keys and the database live (env EASEL_DATA_DIR; default: the per-user "
        "data directory).",
        show_default=False,
    ),
]

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
