"""The tokens a GPT image model's response reports in `usage`, as OpenAI counts them."""

from __future__ import annotations

from dataclasses import dataclass

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
    with its o200k one); a generation has no input image tokens."""

    text_tokens: int
    image_tokens: int
    output_tokens: int

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def generation_usage(
    quality: str, width: int, height: int, text_tokens: int, images: int
) -> ImageUsage:
    """The usage of a generation that made `images` images."""
    return ImageUsage(
        text_tokens=text_tokens,
        image_tokens=0,
        output_tokens=images * output_tokens_per_image(quality, width, height),
    )
