"""Test-only fault injection: out-of-accelerator-memory above a chosen batch size.

A CPU machine cannot run out of GPU memory, so the tests of the split-and-retry path set
`EASEL_TEST_OOM_AT_BATCH_PIXELS=N`: every pipeline call generating N or more pixels in all (images
x width x height) then raises `torch.OutOfMemoryError` before it starts, where a real one would
surface. Unset (the default, and the only sensible production setting) it does nothing.
"""

from __future__ import annotations

import os

import torch

OOM_ENV = "EASEL_TEST_OOM_AT_BATCH_PIXELS"


def check_injected_oom(images: int, width: int, height: int) -> None:
    threshold = os.environ.get(OOM_ENV)
    if threshold and images * width * height >= int(threshold):
        raise torch.OutOfMemoryError(
            f"injected by {OOM_ENV}={threshold} for {images} images of {width}x{height}"
        )
