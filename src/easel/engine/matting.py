"""Background removal for `background: transparent`: a BiRefNet ONNX export run by ONNX Runtime.

BiRefNet (MIT code and weights) cuts out the salient subject of an image; the export in the hub
layout of onnx-community's BiRefNet repositories (`onnx/model.onnx`, `preprocessor_config.json`)
needs no code from the hub, so a directory of the same layout with any graph of the same inputs
and outputs loads through this same code. The model loads on first need, on its own thread, once
per process, and runs on the engine's device where ONNX Runtime has a provider for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch
from huggingface_hub import snapshot_download
from PIL import Image
from pydantic import BaseModel

from easel.engine.loader import looks_like_path
from easel.engine.memory import MemoryBudget
from easel.engine.worker import RELOAD_BACKOFF_SECONDS
from easel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

MODEL_FILE = "onnx/model.onnx"
PREPROCESSOR_FILE = "preprocessor_config.json"

# ImageNet's statistics, which BiRefNet was trained with; a preprocessor config may say otherwise.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputSize(BaseModel):
    width: int
    height: int


class Preprocessing(BaseModel):
    """What the model's `preprocessor_config.json` says about its input (other keys ignored)."""

    size: InputSize = InputSize(width=1024, height=1024)
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD


# About the size of onnx-community's BiRefNet export, for the budget before the first load.
EXPECTED_BYTES = 1_000_000_000


class Matting(Protocol):
    """What serving a transparent background needs of a matting model, wherever it runs: in this
    process (`MattingModel`) or in a cluster's matting deployment."""

    async def ready(self) -> None:
        """Raise 503 `model_unavailable` (with Retry-After) when the model cannot load."""
        ...

    async def cut_out(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each HxWx3 uint8 image as HxWx4, its alpha the foreground matte."""
        ...


class MattingModel:
    """The background-matting model of one process: `cut_out` gives images an alpha channel.

    For the memory budget it is a resident model like a pipeline: `name`, `resident_bytes()`,
    `release()` and `in_use`.
    """

    name = "background-matting"

    def __init__(
        self, source: str, device: torch.device, budget: MemoryBudget | None = None
    ) -> None:
        self.source = source
        self.device = device
        # The engine's memory budget, when the model runs beside its pipelines: loading and
        # running it wait for room as a pipeline does, and it is released when another needs it.
        self.budget = budget
        # One thread loads and runs the model: loads never overlap and never block the event loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="easel-matting")
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._preprocessing = Preprocessing()
        self._bytes = 0
        self._failed_at: float | None = None
        # Why the last load failed, for the operator (a client's 503 does not say).
        self.load_error: str | None = None
        self._running = 0

    @property
    def in_use(self) -> bool:
        return self._running > 0

    def resident_bytes(self) -> int:
        """The weights' size while loaded (ONNX Runtime keeps them as the file holds them)."""
        return self._bytes

    def release(self) -> None:
        """Drop the loaded model; the next transparent request loads it again."""
        with self._lock:
            self._session = None
            self._bytes = 0

    async def ready(self) -> None:
        """Load the model if need be, or raise 503 `model_unavailable` when it cannot load; a
        request calls it before generating so that it never makes images it cannot deliver."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._budgeted_load)

    async def cut_out(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each HxWx3 uint8 image as HxWx4, its alpha the model's foreground matte."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._cut_out_all, images
        )

    def _budgeted_load(self) -> None:
        with self._budgeted():
            self._loaded()

    def _cut_out_all(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._budgeted():
            self._running += 1
            try:
                session = self._loaded()
                return [np.dstack((pixels, self._alpha(session, pixels))) for pixels in images]
            finally:
                self._running -= 1

    def _budgeted(self) -> AbstractContextManager[None]:
        """Holds the model's room in the budget while it loads or runs (none without a budget).
        Until its first load the size is a guess: the published BiRefNet export's."""
        if self.budget is None:
            return nullcontext()
        return self.budget.use(self, self._bytes or EXPECTED_BYTES)

    def _alpha(self, session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
        """The HxW uint8 matte of one image: resized to the model's input, normalised, and its
        logits' sigmoid resized back."""
        size = self._preprocessing.size
        resized = Image.fromarray(pixels).resize(
            (size.width, size.height), Image.Resampling.BILINEAR
        )
        scaled = np.asarray(resized, dtype=np.float32) / 255.0
        normalised = (scaled - self._preprocessing.image_mean) / self._preprocessing.image_std
        batch = normalised.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
        (logits,) = session.run(
            [session.get_outputs()[0].name], {session.get_inputs()[0].name: batch}
        )
        matte = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)[0, 0]))
        height, width = pixels.shape[:2]
        full = Image.fromarray(matte).resize((width, height), Image.Resampling.BILINEAR)
        return np.clip(np.rint(np.asarray(full) * 255.0), 0, 255).astype(np.uint8)

    def _loaded(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is not None:
                return self._session
            # A failed load is retried only after the backoff, as a pipeline's is.
            failed_at = self._failed_at
            if failed_at is not None and time.monotonic() - failed_at < RELOAD_BACKOFF_SECONDS:
                raise _unavailable()
            try:
                self._session = self._load()
            except Exception as exc:  # a missing or broken model must not take the server down
                log.exception("the background-matting model %s could not be loaded", self.source)
                self.load_error = f"{type(exc).__name__}: {exc}"
                self._failed_at = time.monotonic()
                raise _unavailable() from None
            self._failed_at = None
            self.load_error = None
            return self._session

    def _load(self) -> ort.InferenceSession:
        directory = _local_directory(self.source)
        model_file = directory / MODEL_FILE
        preprocessor = directory / PREPROCESSOR_FILE
        if preprocessor.is_file():
            self._preprocessing = Preprocessing.model_validate_json(preprocessor.read_bytes())
        session = ort.InferenceSession(str(model_file), providers=self._providers())
        self._bytes = model_file.stat().st_size
        log.info(
            "loaded the background-matting model %s on %s",
            self.source,
            session.get_providers()[0],
        )
        return session

    def _providers(self) -> list[str | tuple[str, dict[str, str]]]:
        """The engine's device where this ONNX Runtime build has a provider for it, else CPU."""
        available = ort.get_available_providers()
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" in available:
                options = {"device_id": str(self.device.index or 0)}
                return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
            log.warning(
                "background matting runs on the CPU: this ONNX Runtime has no CUDA provider "
                "(install onnxruntime-gpu for the GPU)"
            )
        return ["CPUExecutionProvider"]


def _local_directory(source: str) -> Path:
    """`source` itself when it is a directory, else its hub snapshot (fetched once)."""
    if looks_like_path(source):
        return Path(source).expanduser()
    return Path(snapshot_download(source, allow_patterns=[MODEL_FILE, PREPROCESSOR_FILE]))


def _unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        # The source and the reason are the operator's: the log has them.
        "Transparent backgrounds cannot be made right now; the server's log says why.",
        code="model_unavailable",
        headers={"Retry-After": str(int(RELOAD_BACKOFF_SECONDS)), "x-should-retry": "false"},
    )
