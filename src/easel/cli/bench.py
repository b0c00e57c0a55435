"""`easel bench`: raw diffusers vs the Easel server at rising concurrency, and PNG encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def _say(text: str) -> None:
    err.print(text, markup=False, highlight=False)


def bench(
    out: Annotated[Path, typer.Option(help="Where the JSON results and the PNG chart go.")] = Path(
        "bench/results"
    ),
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated numbers of concurrent HTTP clients.")
    ] = "1,4,16,64",
    requests_per_client: Annotated[
        int, typer.Option(help="Requests each client sends at every concurrency level.")
    ] = 4,
    min_requests: Annotated[int, typer.Option(help="At least this many requests per level.")] = 48,
    raw_requests: Annotated[
        int,
        typer.Option(
            help="Raw pipeline calls before each level's first part (later blocks last as long as "
            "the Easel part before them)."
        ),
    ] = 4,
    gpu: Annotated[
        bool, typer.Option(help="On CUDA, also the SD 1.5 and SDXL architectures (with MFU).")
    ] = True,
    decoders: Annotated[
        bool,
        typer.Option(
            "--decoders",
            help="Only compare the full VAE with the TAESD decoder on the SD-Turbo architecture "
            "(512 px, 1 step, random weights); writes decoders-<machine>.json under --out.",
        ),
    ] = False,
    encoders: Annotated[
        bool,
        typer.Option(
            "--encoders",
            help="Only the encoders: every PNG encoder and each output format as served, the "
            "lossy ones at several output_compression values, 1024x1024 on one thread; writes "
            "encoders-formats-<machine>.json.",
        ),
    ] = False,
    dit: Annotated[
        bool,
        typer.Option(
            "--dit",
            help="Only the DiT serving comparison: the tiny Z-Image pipeline through `easel serve` "
            "against the same pipeline called directly; writes dit-serving-<machine>.json.",
        ),
    ] = False,
    dit_gpu: Annotated[
        bool,
        typer.Option(
            "--dit-gpu",
            help="CUDA only: the Z-Image-Turbo and FLUX.2-klein-4B architectures (random weights) "
            "at 1024 px, batch 1 and 4, plain and compiled, with MFU; writes "
            "dit-gpu-<machine>.json.",
        ),
    ] = False,
) -> None:
    """Measure Easel against the raw diffusers pipeline; write JSON and a chart under --out.

    On CPU it uses a tiny local pipeline; on CUDA the real SD 1.5 (512 px) and SDXL (1024 px)
    architectures with random weights, plain and with torch.compile.
    """
    try:
        levels = [int(level) for level in concurrency.split(",") if level.strip()]
    except ValueError:
        err.print("[red]--concurrency expects numbers separated by commas, e.g. 1,4,16,64[/red]")
        raise typer.Exit(2) from None
    if not levels or min(levels) < 1 or requests_per_client < 1 or raw_requests < 1:
        err.print("[red]concurrency levels and request counts must be at least 1[/red]")
        raise typer.Exit(2)
    # Imported here: the benchmark loads PyTorch, which no other command needs at start.
    if dit_gpu:
        from easel.bench import dit_gpu as dit_gpu_bench

        try:
            typer.echo(str(dit_gpu_bench.run(out, _say)))
        except dit_gpu_bench.CudaRequired as refused:
            err.print(f"[red]{refused}[/red]", highlight=False)
            raise typer.Exit(2) from None
        return
    if dit:
        from easel.bench import dit_serving

        typer.echo(str(dit_serving.run(out, _say)))
        return
    if encoders:
        from easel.bench import encoders as encoders_bench

        typer.echo(str(encoders_bench.run(out, _say)))
        return
    if decoders:
        from easel.bench.decoders import run

        typer.echo(str(run(out, _say)))
        return
    from easel.bench.runner import run_all

    results, json_path, chart_path = run_all(
        out, levels, requests_per_client, min_requests, raw_requests, gpu, _say
    )
    for target, met in results["targets"].items():
        err.print(f"{'[green]met' if met else '[red]missed'}[/] {target}")
    typer.echo(str(json_path))
    typer.echo(str(chart_path))
