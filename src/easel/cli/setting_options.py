"""Command-line options made from Settings fields, and the Settings a command's flags make.

A setting's flag takes its help and shown default from the field, so neither is written twice.
Flags that take a value arrive as text and Settings parses them: a bad one is refused with the
same one line as a bad environment variable, naming the flag and what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import typer

from easel.settings import Settings, SettingsError, env_var, load_settings

# The flag of each setting that has one (the others are set through the environment only).
SETTING_FLAGS: Mapping[str, str] = {
    "host": "--host",
    "port": "--port",
    "data_dir": "--data-dir",
    "public_base_url": "--public-base-url",
    "url_ttl_seconds": "--url-ttl",
    "storage": "--storage",
    "database_url": "--database-url",
    "log_format": "--log-format",
    "log_prompts": "--log-prompts/--no-log-prompts",
    "queue_images": "--queue-images",
    "batch_images": "--batch-images",
    "batch_pixels": "--batch-pixels",
    "batch_wait_ms": "--batch-wait-ms",
    "adaptive_batch_size": "--adaptive-batch-size/--fixed-batch-size",
    "deadline_seconds": "--deadline",
    "memory_budget": "--memory-budget",
    "max_connections": "--max-connections",
    "max_header_bytes": "--max-header-bytes",
    "header_timeout_seconds": "--header-timeout",
    "body_timeout_seconds": "--body-timeout",
    "api_docs": "--api-docs/--no-api-docs",
    "prompt_rewriter": "--prompt-rewriter",
    "prompt_rewriter_model": "--prompt-rewriter-model",
}


def shown_default(name: str) -> str | None:
    """The field's default as the help and the README show it; None when it has no fixed value
    (its description says what happens when it is unset)."""
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return None
    default = field.default
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    return None if default is None else str(default)


def setting_option(name: str) -> Any:
    """The typer option of the setting `name`: its flag, and help from the field's description."""
    field = Settings.model_fields[name]
    default = shown_default(name)
    # In the help text: a flag's own default is None (not given), so click cannot show this one.
    source = f"env {env_var(name)}" + (f", default {default}" if default is not None else "")
    return typer.Option(
        SETTING_FLAGS[name],
        help=f"{field.description} ({source})",
        show_default=False,
        metavar=_metavar(field.annotation),
    )


def _metavar(annotation: Any) -> str | None:
    if get_origin(annotation) is Literal:
        return "[" + "|".join(str(choice) for choice in get_args(annotation)) + "]"
    if annotation is bool:
        return None  # an on/off flag takes no value
    if annotation is int:
        return "INTEGER"
    if annotation is float:
        return "NUMBER"
    return "PATH" if annotation is Path else "TEXT"


def settings_from_flags(command: str | None, **flags: Any) -> Settings:
    """Settings from the environment with the flags that were given (not None) on top; a bad
    value ends `easel COMMAND` with status 2 and one line naming it."""
    try:
        return load_settings(flags, {name: _flag_name(name) for name in flags})
    except SettingsError as exc:
        typer.secho(f"{' '.join(filter(None, ['easel', command]))}: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


def _flag_name(name: str) -> str:
    return SETTING_FLAGS[name].split("/", 1)[0]
