"""`easel generate`: make images without a server, through the same catalog, checks and engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.cli.models import build_catalog
from easel.cli.options import ConfigOption, ModelSourceOption
from easel.cli.setting_options import settings_from_flags
from easel.errors import EaselError

# PyTorch and diffusers load only when this command runs: the CLI's other commands start without.
if TYPE_CHECKING:
    import numpy as np
    from diffusers import DiffusionPipeline

    from easel.api.images.protocol import ImageJob
    from easel.catalog.output import OutputPlan
    from easel.engine.engine import Engine
    from easel.engine.matting import MattingModel
    from easel.engine.types import GeneratedImage

err = Console(stderr=True)


def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str | None, typer.Option(help="Catalog model (default dall-e-2).")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, one the model accepts.")] = None,
    n: Annotated[int | None, typer.Option("--n", "-n", help="How many images.")] = None,
    quality: Annotated[
        str | None, typer.Option(help="standard, hd, ... as the model accepts.")
    ] = None,
    style: Annotated[
        str | None, typer.Option(help="vivid or natural, where the model has styles.")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Make it reproducible; image i uses seed + i. Default: random."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(help="png, jpeg or webp (GPT image models); sets the files' extension."),
    ] = None,
    output_compression: Annotated[
        int | None, typer.Option(help="0-100, the jpeg or webp quality (GPT image models).")
    ] = None,
    background: Annotated[
        str | None,
        typer.Option(
            help="transparent, opaque or auto (GPT image models); transparent cuts the subject "
            "out with the background-matting model (EASEL_MATTING_MODEL)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the image files to.")
    ] = Path("."),
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            help="Edit this image instead of drawing from nothing (repeat for several, where the "
            "model takes them).",
            dir_okay=False,
        ),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="PNG whose fully transparent pixels mark where the first --image is repainted.",
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    model_source: ModelSourceOption = None,
) -> None:
    """Generate (or, with --image, edit) images locally and write them as image files; prints the
    paths it wrote."""
    from easel.engine.engine import Engine

    # The server's engine, scheduler included, with the EASEL_* batch settings; no deadline: the
    # user is watching the progress bar.
    settings = settings_from_flags("generate")
    scheduler = replace(settings.scheduler_config(), deadline_seconds=None)
    catalog = build_catalog(config, model_source)
    body: dict[str, Any] = {
        "prompt": prompt,
        "model": model,
        "n": n,
        "size": size,
        "quality": quality,
        "style": style,
        "seed": seed,
        "output_format": output_format,
        "output_compression": output_compression,
        "background": background,
    }
    if mask is not None and not image:
        err.print("[red]easel generate: --mask needs an --image to apply to[/red]")
        raise typer.Exit(2)
    try:
        job = _job(catalog, body, image or [], mask)
    except EaselError as exc:
        option = f"--{exc.param.replace('_', '-')}: " if exc.param and exc.param != "prompt" else ""
        err.print(f"[red]easel generate: {option}{exc.message}[/red]")
        raise typer.Exit(2) from exc
    plan = job.plan
    output = job.output
    matting = _matting(settings.matting_model) if output.background == "transparent" else None
    # The engine logs faults with tracebacks for server operators; here the command reports them
    # itself, in one line.
    engine_log = logging.getLogger("easel")
    engine_log.addHandler(logging.NullHandler())
    engine_log.propagate = False
    engine = Engine(Catalog([catalog.get(plan.model)]), config=scheduler)
    try:
        pipe = _load(engine, catalog.get(plan.model))
        images = _run(engine, pipe, plan, job.seed)
    finally:
        asyncio.run(engine.shutdown())
    pixels = [image.pixels for image in images]
    if matting is not None:
        pixels = asyncio.run(matting.cut_out(pixels))
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = write_images(images, pixels, plan, output, out)
    except OSError as exc:
        err.print(f"[red]easel generate: cannot write to {out}: {exc}[/red]")
        raise typer.Exit(1) from exc
    for path in paths:
        typer.echo(str(path))


def _job(catalog: Catalog, body: dict[str, Any], images: list[Path], mask: Path | None) -> ImageJob:
    """The request checked as the API checks it: a generation, or an edit of `images`."""
    from easel.api.images.edit_request import CreateEditRequest
    from easel.api.images.protocol import DEFAULT_MODEL, CreateImageRequest
    from easel.catalog.edit_rules import ImageFile

    if not images:
        request = CreateImageRequest.parse(body)
        return request.resolve(catalog.get(request.model_name))
    if body["style"] is None:
        del body["style"]  # edits have no styles: only a given one is refused
    # The default model is this command's, not the edits endpoint's.
    edit = CreateEditRequest.parse({**body, "model": body["model"] or DEFAULT_MODEL})
    names = ["image"] if len(images) == 1 else [f"image[{i}]" for i in range(len(images))]
    files = [
        ImageFile(name, _read(path, "--image")) for name, path in zip(names, images, strict=True)
    ]
    mask_file = ImageFile("mask", _read(mask, "--mask")) if mask is not None else None
    job = edit.resolve_edit(catalog.get(edit.model_name), files, mask_file)
    # Edits by URL are the server's: here the images are written to files.
    return replace(job, response_format="b64_json")


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        err.print(f"[red]easel generate: {option}: cannot read {path}: {exc.strerror}[/red]")
        raise typer.Exit(2) from exc


def _load(engine: Engine, spec: ModelSpec) -> DiffusionPipeline:
    from diffusers.utils import logging as diffusers_logging

    # Our progress bar is the one over denoising steps; diffusers' loading bars would interleave.
    diffusers_logging.disable_progress_bar()
    with err.status(f"Loading {spec.name} from {spec.source} on {engine.device.type} ..."):
        try:
            return engine.pipeline(spec.name)
        except EaselError as exc:
            # The user is the operator here: say why, which the API's 503 keeps to the log.
            reason = engine.workers[spec.name].load_error
            message = (
                f"cannot load {spec.name} from {spec.source}: {reason}" if reason else exc.message
            )
            err.print(f"[red]easel generate: {escape(message)}[/red]")
            raise typer.Exit(1) from exc


def _matting(source: str) -> MattingModel:
    """The background-matting model, loaded before any image is made; the command stops with the
    reason when it is switched off or cannot load."""
    from easel.engine.device import best_device
    from easel.engine.matting import MattingModel

    if not source:
        err.print(
            "[red]easel generate: --background: transparent backgrounds are switched off "
            "(EASEL_MATTING_MODEL is empty)[/red]"
        )
        raise typer.Exit(2)
    matting = MattingModel(source, best_device())
    with err.status(f"Loading the background-matting model {source} ..."):
        try:
            asyncio.run(matting.ready())
        except EaselError as exc:
            reason = f"cannot load the background-matting model {source}: {matting.load_error}"
            err.print(f"[red]easel generate: {escape(reason)}[/red]")
            raise typer.Exit(1) from exc
    return matting


def _run(
    engine: Engine, pipe: DiffusionPipeline, plan: GenerationPlan, seed: int | None
) -> list[GeneratedImage]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        label = f"{plan.model}, {plan.n} x {plan.width}x{plan.height}"
        task = progress.add_task(label, total=plan.steps)
        # The instance attribute shadows the method for this one pipeline object only.
        pipe.progress_bar = _StepProgress(progress, task)
        try:
            return asyncio.run(engine.generate(plan, seed=seed)).images
        except Exception as exc:  # a pipeline that fails mid-way: say so, no traceback
            reason = f"{type(exc).__name__}: {exc}"
            err.print(f"[red]easel generate: the {plan.model} pipeline failed: {reason}[/red]")
            raise typer.Exit(1) from exc


def write_images(
    images: list[GeneratedImage],
    pixels: list[np.ndarray],
    plan: GenerationPlan,
    output: OutputPlan,
    out: Path,
) -> list[Path]:
    """Write each image's `pixels` as `<model>-<seed>.<format>` in `out`, never over an existing
    file."""
    from easel.encoding import encode_image, png_text

    paths = []
    for image, image_pixels in zip(images, pixels, strict=True):
        file = encode_image(image_pixels, png_text(plan, image), output.format, output.compression)
        attempt = 0
        while True:
            suffix = f"-{attempt}" if attempt else ""
            path = out / f"{plan.model}-{image.seed}{suffix}.{output.format}"
            try:
                with open(path, "xb") as handle:  # "x": an earlier run's file is never replaced
                    handle.write(file)
                break
            except FileExistsError:
                attempt += 1
        paths.append(path)
    return paths


class _StepProgress:
    """Stands in for `DiffusionPipeline.progress_bar`, the hook through which every diffusers
    pipeline reports its denoising loop (as a tqdm bar), and moves a rich progress task instead."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def __call__(self, iterable: Iterable[Any] | None = None, total: int | None = None) -> Any:
        if iterable is not None:
            return self._track(iterable)
        self._progress.reset(self._task, total=total)
        return self

    def _track(self, iterable: Iterable[Any]) -> Iterator[Any]:
        items = list(iterable)
        self._progress.reset(self._task, total=len(items))
        for item in items:
            yield item
            self._progress.advance(self._task)

    def __enter__(self) -> _StepProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def update(self, steps: int = 1) -> None:
        self._progress.advance(self._task, steps)
