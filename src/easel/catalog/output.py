"""The output fields of OpenAI's GPT image models, and what each model family accepts of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from easel.errors import InvalidRequestError, unsupported_value

# dall-e: OpenAI's older request rules (url or b64_json answers, PNG only); a name an operator adds
# without a family follows them. gpt-image: gpt-image-1, -1-mini and -1.5. gpt-image-2: the same
# with free sizes.
Family = Literal["dall-e", "gpt-image", "gpt-image-2"]

ImageFormat = Literal["png", "jpeg", "webp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")
DEFAULT_COMPRESSION = 100

# Fields OpenAI defines only for the GPT image models, each with the values a dall-e family model
# honours: what it makes anyway (whole opaque PNGs in one response, unmoderated). Clients that
# forward every field send these; any other value is refused.
OUTPUT_VALUES: dict[str, tuple[object, ...]] = {
    "stream": (False,),
    "partial_images": (0,),
    "output_format": ("png",),
    "output_compression": (DEFAULT_COMPRESSION,),
    "background": ("auto", "opaque"),
    "moderation": ("auto",),
}

# The most partial images a streamed request may ask for (OpenAI's limit).
MAX_PARTIAL_IMAGES = 3

# The GPT families take every format, compression, background and moderation level, and stream.
GPT_OUTPUT_VALUES: dict[str, tuple[object, ...]] = {
    **OUTPUT_VALUES,
    "stream": (False, True),
    "partial_images": tuple(range(MAX_PARTIAL_IMAGES + 1)),
    "output_format": IMAGE_FORMATS,
    "output_compression": tuple(range(101)),
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
}


@dataclass(frozen=True)
class OutputRequest:
    """The output fields as a request gave them; None means the default."""

    stream: bool | None = None
    partial_images: int | None = None
    output_format: str | None = None
    output_compression: int | None = None
    background: str | None = None
    moderation: str | None = None

    def given(self) -> bool:
        """Whether any of these fields, which only the GPT image models define, has a value."""
        return any(value is not None for value in asdict(self).values())


@dataclass(frozen=True)
class OutputPlan:
    """How a request's images are written: format, compression (jpeg/webp), background."""

    format: ImageFormat = "png"
    # 0-100 as OpenAI's `output_compression`: 100 keeps the most detail.
    compression: int = DEFAULT_COMPRESSION
    # What the response reports. OpenAI's `auto` lets its model choose; here it is opaque, since a
    # cut-out drops part of the picture and is made only when asked for.
    background: Literal["transparent", "opaque"] = "opaque"


def accepted_values(family: Family) -> dict[str, tuple[object, ...]]:
    """Each output field's values that a model of `family` honours."""
    return OUTPUT_VALUES if family == "dall-e" else GPT_OUTPUT_VALUES


def output_plan(family: Family, request: OutputRequest) -> OutputPlan:
    """The request's output, or a 400 naming the first field `family` cannot honour."""
    supported_values = accepted_values(family)
    # OpenAI's own refusal comes before the per-field ones (dall-e models refuse `transparent` as
    # a value like any other).
    if (
        family != "dall-e"
        and request.background == "transparent"
        and request.output_format == "jpeg"
    ):
        raise transparent_refusal("jpeg")
    for param, value in asdict(request).items():
        supported = supported_values[param]
        # By type too: the JSON 0 is not false.
        if value is not None and not any(
            type(value) is type(allowed) and value == allowed for allowed in supported
        ):
            if param == "output_compression" and family != "dall-e":
                raise _compression_refusal(value)
            raise unsupported_value(param, value, supported)
    return OutputPlan(
        format=next(f for f in IMAGE_FORMATS if f == (request.output_format or "png")),
        compression=(
            request.output_compression
            if request.output_compression is not None
            else DEFAULT_COMPRESSION
        ),
        background="transparent" if request.background == "transparent" else "opaque",
    )


def transparent_refusal(output_format: str | None) -> InvalidRequestError:
    """OpenAI's 400 for a transparent background in `output_format`, or from a server whose
    background-matting model is switched off."""
    if output_format == "jpeg":
        message = (
            "Transparent background is not supported with the 'jpeg' output format. "
            "Use 'png' or 'webp'."
        )
    else:
        # OpenAI's wording for a model without transparency.
        message = "Transparent background is not supported for this model."
    return InvalidRequestError(message, param="background", code="invalid_value")


def _compression_refusal(value: object) -> InvalidRequestError:
    below = isinstance(value, int) and value < 0
    return InvalidRequestError(
        f"{value} is {'less than the minimum of 0' if below else 'greater than the maximum of 100'}"
        " - 'output_compression'",
        param="output_compression",
        code="integer_below_min_value" if below else "integer_above_max_value",
    )
