"""One benchmark workload: a pipeline on disk and the settings every request uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    name: str
    pipeline_dir: Path
    side: int  # square images, generated at the pipeline's native size: no resize either way
    steps: int
    guidance_scale: float
    prompt: str = "a lighthouse on a cliff at dawn, oil painting"

    @property
    def size(self) -> str:
        return f"{self.side}x{self.side}"

    def catalog_yaml(self, model: str) -> str:
        """A catalog entry that makes the server run exactly these settings."""
        return (
            "models:\n"
            f"  {model}:\n"
            f"    source: {self.pipeline_dir}\n"
            f"    sizes: [{self.size}]\n"
            f"    default_size: {self.size}\n"
            "    max_n: 1\n"
            f"    qualities: {{standard: {{steps: {self.steps}, "
            f"guidance_scale: {self.guidance_scale}}}}}\n"
        )
