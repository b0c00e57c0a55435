"""Loading a diffusers pipeline from a hub id (through huggingface_hub's cache) or a directory."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderTiny, DiffusionPipeline
from huggingface_hub import snapshot_download

log = logging.getLogger(__name__)

# Loading patches torch.nn globally (accelerate's empty-weight initialisation), so two models
# loading at once in different threads corrupt each other: loads take turns (pipelines and the
# prompt rewriter's model alike).
LOAD_LOCK = threading.Lock()


class ModelLoadError(RuntimeError):
    """A pipeline that cannot be loaded; the message says what to do about it."""


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


@dataclass(frozen=True)
class PipelineKey:
    """What makes two catalog entries the same loaded pipeline: catalog names that share a key
    share one copy of the weights, one queue and one batcher. The device and dtype are the
    engine's, the same for every pipeline, so the source and its decoder tell pipelines apart."""

    source: str
    decoder: str | None = None

    @classmethod
    def of(cls, source: str, decoder: str | None = None) -> PipelineKey:
        """`~/models/x`, `./x` and `/home/me/x` are one directory, so one pipeline."""
        return cls(_canonical(source), None if decoder is None else _canonical(decoder))


def _canonical(source: str) -> str:
    if looks_like_path(source):
        return str(Path(source).expanduser().resolve())
    return source


def download(repo_id: str) -> Path:
    """The hub snapshot of `repo_id` in the Hugging Face cache, fetching what is missing: diffusers
    picks the files a load reads (the pipeline's components, one weight format, no variants)."""
    return Path(DiffusionPipeline.download(repo_id))


def download_model(repo_id: str) -> Path:
    """The hub snapshot of a single model (an autoencoder, say): its config and safetensors."""
    return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors"]))


def resolve_source(source: str) -> Path:
    """A local directory for the pipeline `source`: the directory itself, or its hub snapshot
    (fetched once)."""
    return _resolve(
        source,
        marker="model_index.json",
        fetch=download,
        kind="a diffusers pipeline directory",
        hint="point the model at a local directory with --model NAME=/path/to/pipeline",
    )


def resolve_decoder(source: str) -> Path:
    """A local directory for the single-model `source` of a decoder, as `resolve_source`."""
    return _resolve(
        source,
        marker="config.json",
        fetch=download_model,
        kind="a diffusers model directory",
        hint="point the model's `decoder` at a local AutoencoderTiny directory",
    )


def _resolve(
    source: str, *, marker: str, fetch: Callable[[str], Path], kind: str, hint: str
) -> Path:
    if looks_like_path(source):
        path = Path(source).expanduser()
        if not (path / marker).is_file():
            raise ModelLoadError(
                f"{path} is not {kind} (no {marker}); point it at a directory saved with "
                "save_pretrained or at a hub id"
            )
        return path
    try:
        return fetch(source)
    except Exception as exc:
        raise ModelLoadError(
            f"could not fetch {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Check the network and HF_TOKEN for gated models, or {hint}"
        ) from exc


def load_pipeline(
    source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
) -> DiffusionPipeline:
    """The pipeline class named in model_index.json, on `device` in `dtype`; with `decoder`, the
    AutoencoderTiny there instead of the pipeline's own VAE (which is then never loaded)."""
    directory = resolve_source(source)
    decoder_directory = None if decoder is None else resolve_decoder(decoder)
    with LOAD_LOCK:
        components = {}
        if decoder_directory is not None:
            components["vae"] = _load_decoder(decoder_directory, directory, dtype)
        try:
            pipe = DiffusionPipeline.from_pretrained(directory, dtype=dtype, **components)
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the pipeline in {directory} ({type(exc).__name__}: {exc})"
            ) from exc
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    log.info(
        "loaded %s (%s%s) on %s as %s",
        source,
        type(pipe).__name__,
        "" if decoder is None else f", decoder {decoder}",
        device,
        dtype,
    )
    return pipe


def _load_decoder(directory: Path, pipeline_directory: Path, dtype: torch.dtype) -> AutoencoderTiny:
    """The tiny autoencoder in `directory`, checked to read the pipeline's latents."""
    try:
        decoder = AutoencoderTiny.from_pretrained(directory, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(
            f"could not load the decoder in {directory} as an AutoencoderTiny "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    vae_config = pipeline_directory / "vae" / "config.json"
    if not vae_config.is_file():
        raise ModelLoadError(
            f"the pipeline in {pipeline_directory} has no VAE for a decoder to replace"
        )
    latent_channels = json.loads(vae_config.read_text(encoding="utf-8")).get("latent_channels")
    if latent_channels != decoder.config.latent_channels:
        raise ModelLoadError(
            f"the decoder in {directory} reads {decoder.config.latent_channels}-channel latents, "
            f"the pipeline in {pipeline_directory} makes {latent_channels}: pick the tiny "
            "autoencoder of the pipeline's family (TAESD for SD 1.x/2.x, TAESDXL for SDXL)"
        )
    return decoder
