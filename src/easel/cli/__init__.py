"""The `easel` command line: `serve` and `keys`, each a sub-app of its own module."""

from __future__ import annotations

import typer

from easel.cli.keys import keys_app
from easel.cli.serve import serve

app = typer.Typer(
    name="easel",
    help="Easel: an OpenAI-compatible image generation server on open diffusion models.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.add_typer(keys_app, name="keys")


def main() -> None:
    app()
