"""`easel models list|pull|rm`: the catalog's models and their weights on this machine."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from easel.catalog.catalog import Catalog, CatalogConfigError
from easel.cli.options import ConfigOption, ModelSourceOption
from easel.errors import NotFoundError

models_app = typer.Typer(help="List, download and remove model weights.", no_args_is_help=True)
err = Console(stderr=True)

READYZ_TIMEOUT_SECONDS = 10.0

NameArgument = Annotated[
    str, typer.Argument(help="A catalog model name (e.g. dall-e-2) or a hub id (org/name).")
]


def build_catalog(config: ConfigOption, model_source: ModelSourceOption) -> Catalog:
    """The catalog as `easel serve` would build it on this machine from the same file and
    overrides."""
    # Loads PyTorch to look at the device: imported by the commands that build a catalog.
    from easel.engine.device import describe_machine

    try:
        return Catalog.build(config, model_source or (), describe_machine())
    except CatalogConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="A running server's base URL (e.g. http://127.0.0.1:8000): list its models' state "
        "and the memory they hold instead.",
    ),
]


@models_app.command("list")
def list_models(
    config: ConfigOption = None,
    model_source: ModelSourceOption = None,
    server: ServerOption = None,
) -> None:
    """Each catalog model: its source (and decoder, and multi-image edits source), whether its
    weights are here and their size, its model family with the languages and prompt tokens its
    text encoder reads, licence, commercial use, sizes, and why it runs that source; with
    --server, what a running server has loaded."""
    if server is not None:
        _list_loaded(server)
        return
    # easel.weights loads diffusers: imported by the commands that use it, not at the CLI's start.
    from easel.engine.families import family_for_source
    from easel.weights import local_weights

    catalog = build_catalog(config, model_source)
    table = Table(
        "model",
        "source",
        "weights here",
        "on disk",
        "family",
        "languages",
        "prompt tokens",
        "licence",
        "commercial use",
        "decoder",
        "edits source",
        "sizes",
        "chosen",
    )
    for spec in catalog:
        weights = local_weights(spec.source)
        if weights is None:
            present, size = "no", "-"
        else:
            present = "yes" if weights.has_pipeline_index else "incomplete"
            size = human_size(weights.size_bytes)
        # Known once the pipeline's model_index.json is here.
        family = family_for_source(spec.source)
        facts = (
            (family.name, ", ".join(sorted(family.languages)), str(family.max_prompt_tokens))
            if family
            else ("-", "-", "-")
        )
        origin = catalog.origin(spec.name)
        table.add_row(
            spec.name,
            spec.source,
            present,
            size,
            *facts,
            spec.licence,
            spec.commercial_use,
            spec.decoder or "-",
            spec.edits_source or "-",
            ", ".join(spec.sizes),
            origin.partition(":")[0],
        )
    if catalog.builtin is not None:
        table.caption = f"Built-in models: {catalog.builtin.reason}."
    # Piped output is for grep: one line per model, however long its paths.
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


def _list_loaded(server: str) -> None:
    """The server's models as its /readyz reports them: state, and the memory budget's residents."""
    url = server.rstrip("/") + "/readyz"
    try:
        # /readyz answers 503 while a model loads: its body still says what is loaded.
        readiness = httpx.get(url, timeout=READYZ_TIMEOUT_SECONDS).json()
    except (httpx.HTTPError, ValueError) as exc:
        err.print(f"[red]easel models list: cannot read {url}: {exc}[/red]")
        raise typer.Exit(1) from exc
    memory = readiness.get("memory")
    residents = {
        model: resident
        for resident in (memory or {}).get("resident", [])
        for model in resident["models"]
    }
    table = Table("model", "state", "resident", "holds", "last used")
    for model, state in readiness.get("models", {}).items():
        resident = residents.get(model)
        if resident is None:
            table.add_row(model, state, "no", "-", "-")
            continue
        how = "offloaded" if resident["offloaded"] else "yes"
        table.add_row(
            model,
            state,
            f"{how}, in use" if resident["in_use"] else how,
            human_size(resident["bytes"]),
            resident["last_used"],
        )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    if memory is not None:
        console.print(
            f"memory budget ({memory['device']}): {human_size(memory['used_bytes'])} used of "
            f"{human_size(memory['budget_bytes'])}, at most {human_size(memory['peak_bytes'])} "
            f"at once; {memory['evictions']} released to make room"
        )


@models_app.command("pull")
def pull_model(
    name: NameArgument, config: ConfigOption = None, model_source: ModelSourceOption = None
) -> None:
    """Download a model's pipeline, and its decoder and multi-image edits pipeline if it names
    them, from the Hugging Face hub (only the files they need; resumable)."""
    from easel.engine.loader import ModelLoadError, resolve_decoder
    from easel.weights import WeightsError, is_hub_id, pull

    source = _source(name, config, model_source)
    if not is_hub_id(source):
        err.print(f"{name} is served from the local directory {source}: nothing to download.")
    else:
        err.print(f"Fetching {source} into the Hugging Face cache (HF_HOME) ...")
        try:
            typer.echo(str(pull(source)))
        except WeightsError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    edits_source = _edits_source(name, config, model_source)
    if edits_source is not None and is_hub_id(edits_source) and edits_source != source:
        err.print(f"Fetching its multi-image edits pipeline {edits_source} ...")
        try:
            typer.echo(str(pull(edits_source)))
        except WeightsError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    decoder = _decoder(name, config, model_source)
    if decoder is not None and is_hub_id(decoder):
        err.print(f"Fetching its decoder {decoder} ...")
        try:
            typer.echo(str(resolve_decoder(decoder)))
        except ModelLoadError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc


@models_app.command("rm")
def remove_model(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
    model_source: ModelSourceOption = None,
) -> None:
    """Delete a model's downloaded weights from the Hugging Face cache, asking first."""
    from easel.weights import is_hub_id, removal

    source = _source(name, config, model_source)
    if not is_hub_id(source):
        err.print(
            f"[red]{name} is served from the local directory {source}; Easel does not delete "
            "directories it did not download.[/red]"
        )
        raise typer.Exit(1)
    plan = removal(source)
    if plan is None:
        err.print(f"No downloaded weights for {source}: nothing to remove.")
        return
    size = human_size(plan.expected_freed_size)
    if not yes and not typer.confirm(
        f"Delete {source} from the Hugging Face cache, freeing {size}?"
    ):
        err.print("Nothing removed.")
        raise typer.Exit(1)
    plan.execute()
    typer.echo(f"Removed {source}, freed {size}.")


def _source(name: str, config: ConfigOption, model_source: ModelSourceOption) -> str:
    from easel.weights import is_hub_id

    catalog = build_catalog(config, model_source)
    try:
        return catalog.get(name).source
    except NotFoundError:
        if "/" in name and is_hub_id(name):
            return name
        err.print(
            f"[red]{name} is neither a model of the catalog ({', '.join(catalog.names())}) nor a "
            "hub id of the form org/name.[/red]"
        )
        raise typer.Exit(2) from None


def _decoder(name: str, config: ConfigOption, model_source: ModelSourceOption) -> str | None:
    """The decoder of catalog model `name`; None for a bare hub id or a model without one."""
    catalog = build_catalog(config, model_source)
    return catalog.get(name).decoder if name in catalog.names() else None


def _edits_source(name: str, config: ConfigOption, model_source: ModelSourceOption) -> str | None:
    """The multi-image edits pipeline of catalog model `name`; None where it names none."""
    catalog = build_catalog(config, model_source)
    return catalog.get(name).edits_source if name in catalog.names() else None


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
