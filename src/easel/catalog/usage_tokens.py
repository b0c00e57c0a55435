"""The tokens a GPT image model's response reports in `usage`, as OpenAI counts them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from easel.catalog.spec import GenerationPlan

# OpenAI's output tokens per image by quality and size (width, height), from its pricing page
# (openai-wire.md); gpt-image-1, -1-mini and -1.5 share the table.
OUTPUT_TOKENS: dict[str, dict[tuple[int, int], int]] = {
    "low": {(1024, 1024): 272, (1024, 1536): 408, (1536, 1024): 400},
    "medium": {(1024, 1024): 1056, (1024, 1536): 1584, (1536, 1024): 1568},
    "high": {(1024, 1024): 4160, (1024, 1536): 6240, (1536, 1024): 6208},
}
# A quality of an operator's own, outside OpenAI's three, counts as OpenAI's default.
FALLBACK_QUALITY = "medium"
_SQUARE = (1024, 1024)
# Pixels a side of one input image token: Easel's own count (OpenAI publishes no rule for GPT
# image inputs), the latent patch a diffusion transformer reads as one token, an 8x VAE latent
# in 2x2 patches.
IMAGE_TOKEN_PIXELS = 16


def output_tokens_per_image(quality: str, width: int, height: int) -> int:
    """The table's value; for gpt-image-2's free sizes (no published formula), the square's tokens
    scaled by the size's area, the rule the table's 1024x1536 column follows exactly."""
    table = OUTPUT_TOKENS.get(quality, OUTPUT_TOKENS[FALLBACK_QUALITY])
    listed = table.get((width, height))
    if listed is not None:
        return listed
    return round(table[_SQUARE] * width * height / (_SQUARE[0] * _SQUARE[1]))


@dataclass(frozen=True)
class ImageUsage:
    """A response's token counts. Text tokens come from the model's own tokenizer (OpenAI counts
    with its o200k one); input image tokens are an edit's (`input_image_tokens`)."""

    text_tokens: int
    image_tokens: int
    output_tokens: int

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def input_image_tokens(width: int, height: int) -> int:
    """One input image's tokens: the patches of the image as the pipeline reads it, at the
    generated size (image-to-image resizes it to that size; references are scaled to at most
    its area)."""
    return math.ceil(width / IMAGE_TOKEN_PIXELS) * math.ceil(height / IMAGE_TOKEN_PIXELS)


def generation_usage(plan: GenerationPlan, text_tokens: int, images: int) -> ImageUsage:
    """The usage of a request that made `images` images from `plan` (an edit's input images
    counted too)."""
    inputs = len(plan.edit.images) if plan.edit is not None else 0
    return ImageUsage(
        text_tokens=text_tokens,
        image_tokens=inputs * input_image_tokens(plan.width, plan.height),
        output_tokens=images * output_tokens_per_image(plan.quality, plan.width, plan.height),
    )


def usage_per_image(usage: ImageUsage, images: int) -> list[ImageUsage]:
    """Each of `images` images' share of a request's `usage`: its own output tokens, and the
    input tokens on the first, so that summing the shares counts the request once."""
    output = usage.output_tokens // images
    first = ImageUsage(usage.text_tokens, usage.image_tokens, output)
    return [first] + [ImageUsage(0, 0, output)] * (images - 1)
