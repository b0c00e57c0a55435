"""What a benchmark ran on, written into every result so numbers are never read out of context."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import diffusers
import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def slug(machine: dict[str, Any]) -> str:
    """A file-name part naming the machine: the GPU if any, else the CPU and its core count."""
    name = machine["gpu"] or f"{machine['cpu']}-{machine['cores']}cores"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
