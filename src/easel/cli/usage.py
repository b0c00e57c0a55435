"""`easel usage`: usage totals by key, model and day, as a table or CSV."""

from __future__ import annotations

import csv
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from easel.cli.options import DatabaseUrlOption, DataDirOption, open_database
from easel.usage.store import SUMMARY_FIELDS, UsageFilter, UsageStore, UsageSummary, totals

err = Console(stderr=True)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected a date like 2026-11-24, got {value!r}", param_hint=option
        ) from None


def usage(
    key: Annotated[str | None, typer.Option("--key", help="Only this key id.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only this `user` of the requests.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="First day (UTC), e.g. 2026-11-01.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (UTC), included.")] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="Write CSV to this file ('-' for stdout) instead of a table."),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Usage by key, model and day: requests, failures, images requested and delivered, time,
    input and output tokens."""
    where = UsageFilter(key, model, user, _day(since, "--since"), _day(until, "--until"))
    rows = UsageStore(open_database(data_dir, database_url)).summary(where)
    if csv_path is None:
        _print_table(rows)
    elif str(csv_path) == "-":
        _write_csv(rows, sys.stdout)
    else:
        with open(csv_path, "w", newline="") as handle:
            _write_csv(rows, handle)
        err.print(f"Wrote {len(rows)} rows to {csv_path}.")


def _write_csv(rows: list[UsageSummary], handle: TextIO) -> None:
    writer = csv.writer(handle)
    writer.writerow(SUMMARY_FIELDS)
    for row in rows:
        writer.writerow([getattr(row, name) for name in SUMMARY_FIELDS])


def _print_table(rows: list[UsageSummary]) -> None:
    table = Table(*(name.replace("_", " ") for name in SUMMARY_FIELDS), show_footer=False)
    for row in rows:
        table.add_row(*(str(getattr(row, name)) for name in SUMMARY_FIELDS))
    total = totals(rows)
    table.add_section()
    table.add_row("total", "", "", *(str(total[name]) for name in SUMMARY_FIELDS[3:]))
    Console(width=None if sys.stdout.isatty() else 220).print(table)
