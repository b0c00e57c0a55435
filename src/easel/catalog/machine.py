"""The facts about a machine that decide the built-in models: its accelerator and that memory.

The caller describes the machine (the engine detects it, `easel.engine.device.describe_machine`);
the catalog only reads the description, so choosing defaults never touches a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Accelerator = Literal["cpu", "cuda", "mps"]

GIB = 1024**3

# Z-Image-Turbo holds about 19 GB of bf16 weights (11.5 GB DiT + 7.5 GB Qwen3-4B encoder,
# models-2026.md 3.1); a 1024 px batch needs a few GB of activations besides. 22 GiB keeps 24 GB
# cards (RTX 3090/4090, whose drivers report about 23.6 GiB) in and 16-20 GB cards out.
LARGE_MODEL_MEMORY_BYTES = 22 * GIB


@dataclass(frozen=True)
class Machine:
    """Where pipelines will run: the accelerator kind and, for CUDA, its memory in bytes."""

    accelerator: Accelerator
    memory_bytes: int | None = None

    def __str__(self) -> str:
        if self.accelerator == "cpu":
            return "CPU only"
        if self.accelerator == "mps":
            return "Apple MPS"
        memory = "unknown memory" if self.memory_bytes is None else gib(self.memory_bytes)
        return f"CUDA GPU with {memory}"

    @property
    def fits_large_models(self) -> bool:
        """A CUDA GPU that holds Z-Image-Turbo. Apple MPS shares RAM with the system and runs
        bf16 DiTs slowly, so it counts as small whatever its memory."""
        return (
            self.accelerator == "cuda"
            and self.memory_bytes is not None
            and self.memory_bytes >= LARGE_MODEL_MEMORY_BYTES
        )


CPU_ONLY = Machine("cpu")


def gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"
