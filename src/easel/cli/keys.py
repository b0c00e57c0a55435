"""`easel keys create|update|list|revoke`: manage API keys and their limits in the database."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from easel.cli.options import DatabaseUrlOption, DataDirOption, open_database
from easel.keys.store import ApiKey, KeyStore
from easel.limits.policy import (
    QUOTA_PERIODS,
    KeyPolicy,
    PolicyError,
    check_key_name,
    parse_expiry,
    parse_models,
)

keys_app = typer.Typer(help="Create, change, list and revoke API keys.", no_args_is_help=True)
err = Console(stderr=True)

NameOption = Annotated[str | None, typer.Option("--name", help="A label for the key.")]
RpmOption = Annotated[
    int | None, typer.Option("--rpm", help="Requests per minute (0: no limit).", min=0)
]
IpmOption = Annotated[
    int | None, typer.Option("--ipm", help="Images per minute (0: no limit).", min=0)
]
UserRpmOption = Annotated[
    int | None,
    typer.Option(
        "--user-rpm", help="Requests per minute per `user` of the key (0: no limit).", min=0
    ),
]
UserIpmOption = Annotated[
    int | None,
    typer.Option(
        "--user-ipm", help="Images per minute per `user` of the key (0: no limit).", min=0
    ),
]
QuotaOption = Annotated[
    int | None, typer.Option("--quota", help="Images per quota period (0: no quota).", min=0)
]
QuotaPeriodOption = Annotated[
    str | None,
    typer.Option("--quota-period", help="day, month (UTC calendar) or total.", show_default=False),
]
ModelsOption = Annotated[
    str | None,
    typer.Option("--models", help="Comma-separated models the key may use ('' : all models)."),
]
ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires",
        help="When the key stops working: 2027-01-31, 2027-01-31T12:00:00Z, 30d, 12h, or never.",
    ),
]
EnabledOption = Annotated[
    bool | None,
    typer.Option("--enable/--disable", help="Enable or disable the key.", show_default=False),
]


def _changes(
    rpm: int | None,
    ipm: int | None,
    user_rpm: int | None,
    user_ipm: int | None,
    quota: int | None,
    quota_period: str | None,
    models: str | None,
    expires: str | None,
    enabled: bool | None,
) -> dict[str, Any]:
    """The policy fields given on the command line; 0 and '' clear a limit."""
    changes: dict[str, Any] = {}
    for name, value in (
        ("rpm", rpm),
        ("ipm", ipm),
        ("user_rpm", user_rpm),
        ("user_ipm", user_ipm),
        ("quota", quota),
    ):
        if value is not None:
            changes[name] = value or None
    if quota_period is not None:
        if quota_period not in QUOTA_PERIODS:
            raise PolicyError(f"--quota-period must be one of {', '.join(QUOTA_PERIODS)}")
        changes["quota_period"] = quota_period
    if models is not None:
        changes["models"] = parse_models(models)
    if expires is not None:
        changes["expires_at"] = parse_expiry(expires)
    if enabled is not None:
        changes["disabled"] = not enabled
    return changes


@keys_app.command("create")
def create(
    name: NameOption = None,
    rpm: RpmOption = None,
    ipm: IpmOption = None,
    user_rpm: UserRpmOption = None,
    user_ipm: UserIpmOption = None,
    quota: QuotaOption = None,
    quota_period: QuotaPeriodOption = None,
    models: ModelsOption = None,
    expires: ExpiresOption = None,
    enabled: EnabledOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Make a new key. Its secret is printed once, alone on the last line of stdout."""
    try:
        check_key_name(name or "")
        policy = KeyPolicy().changed(
            _changes(rpm, ipm, user_rpm, user_ipm, quota, quota_period, models, expires, enabled)
        )
    except PolicyError as exc:
        err.print(f"[red]easel keys create: {exc}[/red]")
        raise typer.Exit(2) from exc
    key, secret = KeyStore(open_database(data_dir, database_url)).create(name or "", policy)
    err.print(f"Created key [bold]{key.id}[/bold]. Keep the secret below: it is not shown again.")
    typer.echo(secret)


@keys_app.command("update")
def update(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    name: NameOption = None,
    rpm: RpmOption = None,
    ipm: IpmOption = None,
    user_rpm: UserRpmOption = None,
    user_ipm: UserIpmOption = None,
    quota: QuotaOption = None,
    quota_period: QuotaPeriodOption = None,
    models: ModelsOption = None,
    expires: ExpiresOption = None,
    enabled: EnabledOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Change a key's limits, models, expiry or state; options left out stay as they are."""
    try:
        changes = _changes(
            rpm, ipm, user_rpm, user_ipm, quota, quota_period, models, expires, enabled
        )
        if name is not None:
            check_key_name(name)
        key = KeyStore(open_database(data_dir, database_url)).update(key_id, changes, name)
    except PolicyError as exc:
        err.print(f"[red]easel keys update: {exc}[/red]")
        raise typer.Exit(2) from exc
    if key is None:
        err.print(f"[red]No key with id {key_id}.[/red]")
        raise typer.Exit(1)
    typer.echo(f"Updated {key.id}: {describe_policy(key)}")


@keys_app.command("list")
def list_keys(data_dir: DataDirOption = None, database_url: DatabaseUrlOption = None) -> None:
    """List keys with their limits (never their secrets)."""
    table = Table("id", "name", "key", "created", "status", "limits", "models", "expires")
    for key in KeyStore(open_database(data_dir, database_url)).list():
        policy = key.policy
        table.add_row(
            key.id,
            key.name,
            key.display_hint,
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.status(),
            describe_policy(key),
            ",".join(policy.models) if policy.models else "all",
            policy.expires_at.strftime("%Y-%m-%d %H:%M") if policy.expires_at else "never",
        )
    # Piped output is read by scripts: never truncate an id to fit an 80-column default.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    key = KeyStore(open_database(data_dir, database_url)).revoke(key_id)
    if key is None:
        err.print(f"[red]No key with id {key_id}.[/red]")
        raise typer.Exit(1)
    typer.echo(f"Revoked {key.id}.")


def describe_policy(key: ApiKey) -> str:
    """The key's limits in one short line, e.g. `rpm 60, ipm 100, quota 1000/day`."""
    policy = key.policy
    parts = [
        f"{label} {value}"
        for label, value in (
            ("rpm", policy.rpm),
            ("ipm", policy.ipm),
            ("user rpm", policy.user_rpm),
            ("user ipm", policy.user_ipm),
        )
        if value is not None
    ]
    if policy.quota is not None:
        per = "" if policy.quota_period == "total" else f"/{policy.quota_period}"
        parts.append(f"quota {policy.quota}{per}")
    return ", ".join(parts) or "none"
