"""The `easel` command line: `serve`, `generate`, `keys`, `models`, `usage`, `db`, `cluster` and
`bench`, each in its own module."""

from __future__ import annotations

import typer

from easel.cli.bench import bench
from easel.cli.cluster import cluster_app
from easel.cli.db import db_app
from easel.cli.generate import generate
from easel.cli.keys import keys_app
from easel.cli.models import models_app
from easel.cli.serve import serve
from easel.cli.usage import usage

app = typer.Typer(
    name="easel",
    help="Easel: an OpenAI-compatible image generation server on open diffusion models.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.command()(generate)
app.add_typer(keys_app, name="keys")
app.command()(usage)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(cluster_app, name="cluster")
app.command()(bench)


def main() -> None:
    app()
