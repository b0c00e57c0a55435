"""The `easel` command line: `serve`, `generate`, `keys` and `models`, each in its own module."""

from __future__ import annotations

import typer

from easel.cli.generate import generate
from easel.cli.keys import keys_app
from easel.cli.models import models_app
from easel.cli.serve import serve

app = typer.Typer(
    name="easel",
    help="Easel: an OpenAI-compatible image generation server on open diffusion models.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.command()(generate)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")


def main() -> None:
    app()
