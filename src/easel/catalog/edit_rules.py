"""OpenAI's rules for edits and variations, per model: how many input images, of which formats
and sizes, the mask's, `input_fidelity`, and the strength each leaves to image-to-image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from easel.catalog.edit import EditInputs
from easel.catalog.spec import AUTO, GenerationPlan, ModelSpec, parse_size
from easel.engine.edits import edits_source_for
from easel.engine.families import family_for_source
from easel.errors import InvalidRequestError, invalid_value
from easel.images.inputs import DecodedImage, ImageLimits, decode_image

# OpenAI's mask: a PNG under 4 MB whatever the model.
MASK_LIMITS = ImageLimits(formats=("png",), max_bytes=4 * 1024 * 1024)
INPUT_FIDELITIES = ("high", "low")


@dataclass(frozen=True)
class ImageFile:
    """An input image's bytes as the request sent them, and the name its errors report."""

    param: str
    data: bytes


@dataclass(frozen=True)
class EditFields:
    """An edit's fields besides its images; None means the default."""

    prompt: str
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    input_fidelity: str | None = None


def edit_plan(
    spec: ModelSpec, fields: EditFields, images: Sequence[ImageFile], mask: ImageFile | None
) -> GenerationPlan:
    """The plan of an edit of `images` (the mask applies to the first), or OpenAI's 400. Decodes
    the images: call it off the event loop."""
    _check_image_count(spec, len(images))
    strength = _strength(spec, fields.input_fidelity)
    decoded = [_decode_input(spec, image) for image in images]
    first = decoded[0]
    if mask is not None:
        repaint = _mask(mask, first)
    elif not spec.is_gpt_image and first.alpha is not None and (first.alpha == 0).any():
        # dall-e-2 reads an image's own transparent pixels as its mask when no mask is sent.
        repaint = first.alpha == 0
    else:
        repaint = None
    size = fields.size
    if size == AUTO and spec.is_gpt_image:
        size = closest_size(spec.sizes, first.width, first.height)
    plan = spec.plan(
        prompt=fields.prompt, n=fields.n, size=size, quality=fields.quality, style=None
    )
    edit = EditInputs(
        images=tuple(image.rgb for image in decoded),
        mask=repaint,
        strength=strength,
        # OpenAI's dall-e-2 gives back the pixels outside the mask unchanged; its GPT models
        # redraw the whole image.
        keep_unmasked=not spec.is_gpt_image and repaint is not None,
    )
    return replace(plan, edit=edit)


def variation_plan(
    spec: ModelSpec, image: ImageFile, n: int | None, size: str | None
) -> GenerationPlan:
    """The plan of `n` variations of `image`, or OpenAI's 400 for a model without variations."""
    strength = spec.variation_strength
    if strength is None:
        raise InvalidRequestError(
            f"Invalid value: '{spec.name}'. Image variations are only supported by 'dall-e-2'.",
            param="model",
            code="invalid_value",
        )
    decoded = _decode_input(spec, image)
    plan = spec.variation_plan(n=n, size=size)
    edit = EditInputs(images=(decoded.rgb,), mask=None, strength=strength)
    return replace(plan, edit=edit)


def closest_size(sizes: Sequence[str], width: int, height: int) -> str:
    """Of `sizes`, the one whose aspect ratio is nearest the image's (`size: auto` for edits)."""
    aspect = math.log(width / height)

    def distance(size: str) -> float:
        size_width, size_height = parse_size(size)
        return abs(math.log(size_width / size_height) - aspect)

    return min(sizes, key=distance)


def _check_image_count(spec: ModelSpec, count: int) -> None:
    if not spec.takes_edits:
        raise InvalidRequestError(
            f"Invalid value: '{spec.name}'. This model does not support image edits.",
            param="model",
            code="invalid_value",
        )
    if count == 0:
        raise InvalidRequestError(
            "Missing required parameter: 'image'.", param="image", code="missing_required_parameter"
        )
    if count > spec.max_input_images:
        raise too_many_images(spec.max_input_images, count)
    if count > 1 and not _takes_references(spec, count):
        raise InvalidRequestError(
            f"Invalid 'image': '{spec.name}' takes 1 image on this server (its pipeline has no "
            f"multi-reference editing), but got {count} images.",
            param="image",
            code="array_above_max_length",
        )


def _takes_references(spec: ModelSpec, count: int) -> bool:
    """Whether the pipeline that runs an edit of `count` images to `spec`'s name takes them as
    references: its own, or its edits source where it has one and needs it."""
    edits_source = edits_source_for(spec, count)
    family = family_for_source(edits_source or spec.source)
    if family is None:
        # A hub edits source is known only once downloaded, by its first load: the operator named
        # it for multi-image edits, and the engine refuses them after loading it if it cannot.
        return edits_source is not None
    return family.multi_reference


def too_many_images(limit: int, count: int, param: str = "image") -> InvalidRequestError:
    """OpenAI's refusal of an image array longer than `limit`."""
    return InvalidRequestError(
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, but "
        f"got an array with length {count} instead.",
        param=param,
        code="array_above_max_length",
    )


def _strength(spec: ModelSpec, input_fidelity: str | None) -> float:
    if input_fidelity is None:
        return spec.edit_strength
    if not spec.accepts_input_fidelity:
        raise InvalidRequestError(
            "Unsupported parameter: 'input_fidelity' is not supported with this model.",
            param="input_fidelity",
            code="unsupported_parameter",
        )
    if input_fidelity not in INPUT_FIDELITIES:
        raise invalid_value("input_fidelity", input_fidelity, INPUT_FIDELITIES)
    return spec.high_fidelity_strength if input_fidelity == "high" else spec.edit_strength


def _decode_input(spec: ModelSpec, image: ImageFile) -> DecodedImage:
    limits = ImageLimits(formats=spec.input_formats, max_bytes=spec.max_input_bytes)
    decoded = decode_image(image.data, image.param, limits)
    if spec.square_inputs and decoded.width != decoded.height:
        raise InvalidRequestError(
            f"Invalid input image - image must be square, got {decoded.width}x{decoded.height}.",
            param=image.param,
            code="invalid_image",
        )
    return decoded


def _mask(mask: ImageFile, image: DecodedImage) -> np.ndarray:
    """True where the image is to be repainted: the mask's fully transparent pixels."""
    decoded = decode_image(mask.data, mask.param, MASK_LIMITS)
    if decoded.alpha is None:
        raise InvalidRequestError(
            "Invalid mask image format - mask image missing alpha channel.",
            param=mask.param,
            code="invalid_image_format",
        )
    if (decoded.width, decoded.height) != (image.width, image.height):
        raise InvalidRequestError(
            f"Invalid mask: the mask is {decoded.width}x{decoded.height} but the image is "
            f"{image.width}x{image.height}; they must have the same dimensions.",
            param=mask.param,
            code="invalid_image_dimensions",
        )
    return np.asarray(decoded.alpha == 0)
