"""The text an image carries in its PNG: the settings it was made with."""

from __future__ import annotations

from easel.catalog import GenerationPlan
from easel.engine.types import GeneratedImage


def png_text(plan: GenerationPlan, image: GeneratedImage) -> dict[str, str]:
    """The settings an image was made with, kept in the PNG so the file explains itself."""
    return {
        "prompt": plan.user_prompt,
        "revised_prompt": plan.prompt,
        "negative_prompt": plan.negative_prompt or "",
        "model": plan.model,
        "seed": str(image.seed),
        "steps": str(plan.steps),
        "guidance_scale": str(plan.guidance_scale),
        "quality": plan.quality,
        "style": plan.style or "",
        "generated_size": f"{image.generated_width}x{image.generated_height}",
        "batch_images": str(image.batch_images),
        "Software": "Easel",
    }
