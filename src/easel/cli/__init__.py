"""The `easel` command line: `serve`, `keys` and `bench`, each in a module of its own."""

from __future__ import annotations

import typer

from easel.cli.bench import bench
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
app.command()(bench)


def main() -> None:
    app()
