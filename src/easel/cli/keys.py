"""`easel keys create|list|revoke`: manage API keys in the data directory's database."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from easel.cli.options import DataDirOption
from easel.settings import Settings
from easel.storage.api_keys import KeyStore
from easel.storage.database import Database

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
err = Console(stderr=True)


def _store(data_dir: DataDirOption) -> KeyStore:
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    return KeyStore(Database(settings.resolved_database_url))


@keys_app.command("create")
def create(
    name: Annotated[Optional[str], typer.Option("--name", help="A label for the key.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Make a new key. Its secret is printed once, alone on the last line of stdout."""
    key, secret = _store(data_dir).create(name or "")
    err.print(f"Created key [bold]{key.id}[/bold]. Keep the secret below: it is not shown again.")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(data_dir: DataDirOption = None) -> None:
    """List keys (never their secrets)."""
    table = Table("id", "name", "key", "created", "status")
    for key in _store(data_dir).list():
        table.add_row(
            key.id,
            key.name,
            key.display_hint,
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            "active" if key.active else "revoked",
        )
    # Piped output is read by scripts: never truncate an id to fit an 80-column default.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")], data_dir: DataDirOption = None) -> None:
    """Revoke a key: requests with it are refused from now on."""
    key = _store(data_dir).revoke(key_id)
    if key is None:
        err.print(f"[red]No key with id {key_id}.[/red]")
        raise typer.Exit(1)
    typer.echo(f"Revoked {key.id}.")
