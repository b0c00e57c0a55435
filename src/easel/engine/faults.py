"""Test-only fault injection: out-of-accelerator-memory at a chosen batch size.

A CPU machine cannot run out of GPU memory, so the tests of the split-and-retry path set
`EASEL_TEST_OOM_AT_BATCH_IMAGES=N`: every pipeline call with N or more images then raises
`torch.OutOfMemoryError` before it starts, exactly where a real one would surface. Unset (the
default, and the only sensible production setting) it does nothing.
"""

from __future__ import annotations

import os

import torch

OOM_ENV = "EASEL_TEST_OOM_AT_BATCH_IMAGES"


def check_injected_oom(batch_images: int) -> None:
    threshold = os.environ.get(OOM_ENV)
    if threshold and batch_images >= int(threshold):
        raise torch.OutOfMemoryError(
            f"injected by {OOM_ENV}={threshold} for a batch of {batch_images} images"
        )
