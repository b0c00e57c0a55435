"""`easel db upgrade`: apply the database migrations (`easel serve` also applies them on start)."""

from __future__ import annotations

import typer

from easel.cli.options import DatabaseUrlOption, DataDirOption, cli_settings
from easel.db.database import Database
from easel.db.migrations import head_revision

db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(data_dir: DataDirOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Bring the database schema up to date (safe to run while servers are running)."""
    database = Database(cli_settings(data_dir, database_url).resolved_database_url, migrate=False)
    try:
        applied = database.upgrade()
    finally:
        database.close()
    if applied:
        typer.echo(f"Applied migrations: {', '.join(applied)}. Now at {head_revision()}.")
    else:
        typer.echo(f"Already up to date at {head_revision()}.")
