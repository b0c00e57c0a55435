"""Loading a diffusers pipeline from a hub id (through huggingface_hub's cache) or a directory."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

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
    engine's, the same for every pipeline, so the source is all that tells pipelines apart."""

    source: str

    @classmethod
    def of(cls, source: str) -> PipelineKey:
        """`~/models/x`, `./x` and `/home/me/x` are one directory, so one pipeline."""
        if looks_like_path(source):
            return cls(str(Path(source).expanduser().resolve()))
        return cls(source)


def download(repo_id: str) -> Path:
    """The hub snapshot of `repo_id` in the Hugging Face cache, fetching what is missing: diffusers
    picks the files a load reads (the pipeline's components, one weight format, no variants)."""
    return Path(DiffusionPipeline.download(repo_id))


def resolve_source(source: str) -> Path:
    """A local directory for `source`: the directory itself, or its hub snapshot (fetched once)."""
    if looks_like_path(source):
        path = Path(source).expanduser()
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{path} is not a diffusers pipeline directory (no model_index.json); "
                "point the model at a directory saved with save_pretrained or at a hub id"
            )
        return path
    try:
        return download(source)
    except Exception as exc:
        raise ModelLoadError(
            f"could not fetch {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Check the network and HF_TOKEN for gated models, or point the model at a local "
            "directory with --model NAME=/path/to/pipeline"
        ) from exc


def load_pipeline(source: str, device: torch.device, dtype: torch.dtype) -> DiffusionPipeline:
    """The pipeline class named in model_index.json, on `device` in `dtype`."""
    directory = resolve_source(source)
    with LOAD_LOCK:
        try:
            pipe = DiffusionPipeline.from_pretrained(directory, dtype=dtype)
        except Exception as exc:
            raise ModelLoadError(
                f"could not load the pipeline in {directory} ({type(exc).__name__}: {exc})"
            ) from exc
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded %s (%s) on %s as %s", source, type(pipe).__name__, device, dtype)
    return pipe
