"""A loaded text-to-image pipeline's image-to-image and inpaint pipelines, built from it on first
need with `from_pipe`: they share its modules, so they cost no weight memory of their own."""

from __future__ import annotations

import threading
import weakref

import diffusers
from diffusers import DiffusionPipeline

# Keyed weakly by the text-to-image pipeline: when its worker drops it (a reload, a memory
# budget's eviction), the pipelines derived from it go too, with nothing else to release.
_DERIVED: weakref.WeakKeyDictionary[DiffusionPipeline, dict[str, DiffusionPipeline]] = (
    weakref.WeakKeyDictionary()
)
# Workers of different pipelines derive on their own threads; the table is shared.
_LOCK = threading.Lock()


def derived_pipeline(base: DiffusionPipeline, class_name: str) -> DiffusionPipeline:
    """The diffusers pipeline class `class_name` over `base`'s loaded modules (built once)."""
    with _LOCK:
        by_class = _DERIVED.setdefault(base, {})
        pipe = by_class.get(class_name)
        if pipe is None:
            pipeline_class: type[DiffusionPipeline] = getattr(diffusers, class_name)
            # from_pipe casts the shared modules to `dtype`, float32 unless told: in place, so the
            # text-to-image pipeline's would change too.
            pipe = pipeline_class.from_pipe(base, dtype=base.dtype)
            pipe.set_progress_bar_config(disable=True)
            by_class[class_name] = pipe
        return pipe
