"""How the engine runs an edit or a variation: which pipeline runs it (the name's own, or its edits
source for several images), which pipeline call takes its input images (image-to-image, inpaint,
or the text-to-image pipeline's own references), the call's per-image inputs, and the original
pixels kept outside a mask."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
from diffusers import DiffusionPipeline
from PIL import Image

from easel.catalog import GenerationPlan, ModelSpec
from easel.catalog.edit import EditInputs
from easel.engine.derived import derived_pipeline
from easel.engine.families import (
    ModelFamily,
    checkpoint_guidance,
    family_for_source,
    family_of,
    fitted_steps,
)
from easel.errors import InvalidRequestError

if TYPE_CHECKING:
    from easel.engine.jobs import BatchKey, Part


# FLUX.2's image processor refuses reference images smaller than this on a side, or more
# elongated than this ratio.
_REFERENCE_MIN_SIDE = 64
_REFERENCE_MAX_ASPECT = 8.0


class EditMode(StrEnum):
    IMAGE_TO_IMAGE = "image-to-image"
    INPAINT = "inpaint"
    # The text-to-image pipeline takes the images as references (FLUX.2 klein).
    REFERENCES = "references"


@dataclass(frozen=True)
class EditCall:
    """What an edit's pipeline call needs identical across its images (part of its `BatchKey`)."""

    mode: EditMode
    # The derived pipeline that runs it; None for the text-to-image pipeline itself.
    pipeline_class: str | None
    # How far from the input the call goes; None where the call takes no strength.
    strength: float | None
    # The call takes reference images once for all its images, so it serves one request only.
    shares_inputs: bool = False
    # The most images one call may make, where the pipeline limits it.
    most_images: int | None = None

    @property
    def label(self) -> str:
        label = str(self.mode)
        if self.shares_inputs and self.mode is not EditMode.REFERENCES:
            label += " with references"
        if self.strength is not None:
            label += f" strength {self.strength:g}"
        return label


def edits_source_for(spec: ModelSpec, images: int) -> str | None:
    """The pipeline an edit of `images` input images to `spec`'s name runs on instead of the name's
    own (its `edits_source`), or None where it runs on its own: only several images go elsewhere,
    and only when the name's own family cannot take them as references."""
    if spec.edits_source is None or images < 2:
        return None
    family = family_for_source(spec.source)
    if family is not None and family.multi_reference:
        return None
    return spec.edits_source


def plan_for_source(plan: GenerationPlan, source: str) -> GenerationPlan:
    """`plan`, planned by its name's presets, with no more steps than the pipeline at `source`
    runs well: a guidance-distilled edits source (FLUX.2 klein) is trained for a few."""
    family = family_for_source(source)
    if family is None:
        return plan
    steps = fitted_steps(checkpoint_guidance(family, source), plan.steps)
    return plan if steps == plan.steps else replace(plan, steps=steps)


def edit_call(pipe: DiffusionPipeline, plan: GenerationPlan) -> EditCall | None:
    """How `pipe`'s model runs the plan's edit (None for a generation); a 400 naming what the
    model cannot do with the inputs it was given."""
    edit = plan.edit
    if edit is None:
        return None
    family = family_of(type(pipe).__name__)
    if family is None:
        raise InvalidRequestError(
            f"The model `{plan.model}` cannot edit images: Easel knows no image-to-image "
            f"pipeline for its {type(pipe).__name__}.",
            param="model",
            code="unsupported_model",
        )
    strength = _at_least_one_step(edit.strength, plan.steps)
    if edit.mask is not None:
        return _inpaint_call(family, plan, edit, strength)
    if len(edit.images) == 1 and family.img2img:
        return EditCall(EditMode.IMAGE_TO_IMAGE, family.img2img, strength)
    if family.multi_reference:
        _check_references(edit.images)
        return EditCall(EditMode.REFERENCES, None, None, shares_inputs=True)
    if family.img2img:
        raise _too_many_images(plan.model, len(edit.images), limit=1, masked=False)
    raise InvalidRequestError(
        f"The model `{plan.model}` cannot edit images without a mask: its family "
        f"({family.name}) has no image-to-image pipeline.",
        param="image",
        code="invalid_value",
    )


def _inpaint_call(
    family: ModelFamily, plan: GenerationPlan, edit: EditInputs, strength: float
) -> EditCall:
    if family.inpaint is None:
        raise InvalidRequestError(
            f"The model `{plan.model}` cannot edit with a mask: its family ({family.name}) has "
            "no inpainting pipeline. Send the image without a mask.",
            param="mask",
            code="invalid_value",
        )
    if len(edit.images) == 1:
        return EditCall(EditMode.INPAINT, family.inpaint, strength)
    if not family.multi_reference:
        raise _too_many_images(plan.model, len(edit.images), limit=1, masked=True)
    # The mask is the first image's; the others are references. FLUX.2 klein's inpaint pipeline
    # pairs references with the call's images one to one whenever their counts match, so each
    # call makes one image, which takes every reference.
    _check_references(edit.images[1:])
    return EditCall(EditMode.INPAINT, family.inpaint, strength, shares_inputs=True, most_images=1)


def _too_many_images(model: str, images: int, *, limit: int, masked: bool) -> InvalidRequestError:
    with_mask = " with a mask" if masked else ""
    return InvalidRequestError(
        f"Invalid 'image': array too long. Expected an array with maximum length {limit} for "
        f"model `{model}`{with_mask}, but got an array with length {images} instead.",
        param="image",
        code="array_above_max_length",
    )


def _check_references(images: Sequence[np.ndarray]) -> None:
    for image in images:
        height, width = image.shape[:2]
        if max(width / height, height / width) > _REFERENCE_MAX_ASPECT:
            raise InvalidRequestError(
                f"Invalid 'image': a {width}x{height} reference image is too elongated for this "
                f"model; its sides may differ by at most {_REFERENCE_MAX_ASPECT:g} times.",
                param="image",
                code="invalid_value",
            )


def _at_least_one_step(strength: float, steps: int) -> float:
    """`strength`, raised where the pipelines' int(steps x strength) would run no step at all (they
    refuse that) to the least that runs one: the image comes back as close to the input as the
    model can make it."""
    # One float step above 1/steps, so that steps x strength rounds to no less than 1.
    least = math.nextafter(1.0 / steps, math.inf)
    return min(1.0, max(strength, least))


def edit_pipeline(pipe: DiffusionPipeline, call: EditCall) -> DiffusionPipeline:
    """The pipeline that runs `call`: `pipe` itself, or one derived from it sharing its weights."""
    if call.pipeline_class is None:
        return pipe
    return derived_pipeline(pipe, call.pipeline_class)


def edit_arguments(call: EditCall, key: BatchKey, parts: Sequence[Part]) -> dict[str, Any]:
    """The pipeline call's input images (one per generated image, or the shared references), mask
    and strength, for the images of `parts` in batch order."""
    size = (key.width, key.height)
    arguments: dict[str, Any] = {}
    if call.strength is not None:
        arguments["strength"] = call.strength
    if call.mode is EditMode.REFERENCES:
        edit = _edit_of(parts[0])
        arguments["image"] = [_scaled_to_area(image, size) for image in edit.images]
        return arguments
    if call.shares_inputs:
        references = _edit_of(parts[0]).images[1:]
        arguments["image_reference"] = [_scaled_to_area(image, size) for image in references]
    images: list[Image.Image] = []
    masks: list[Image.Image] = []
    for part in parts:
        edit = _edit_of(part)
        image = Image.fromarray(edit.images[0]).resize(size, Image.Resampling.LANCZOS)
        images += [image] * part.count
        if call.mode is EditMode.INPAINT:
            assert edit.mask is not None  # the inpaint mode is chosen for masked edits only
            # diffusers repaints where the mask is white.
            mask = Image.fromarray(edit.mask).convert("L").resize(size, Image.Resampling.NEAREST)
            masks += [mask] * part.count
    arguments["image"] = images
    if masks:
        arguments["mask_image"] = masks
    return arguments


def _edit_of(part: Part) -> EditInputs:
    edit = part.job.plan.edit
    assert edit is not None  # an edit's batch holds edits only: its key says so
    return edit


def _scaled_to_area(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A reference image in its own aspect ratio, with at most as many pixels as the generated
    image: the pipeline attends to every reference pixel, so the generation size bounds their
    cost. A smaller one stays as it is (enlarging adds cost, not detail) unless it is smaller
    than the pipeline takes."""
    height, width = image.shape[:2]
    scale = min(1.0, math.sqrt(size[0] * size[1] / (width * height)))
    scale = max(scale, _REFERENCE_MIN_SIDE / min(width, height))
    if scale == 1:
        return Image.fromarray(image)
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Image.fromarray(image).resize(scaled, Image.Resampling.LANCZOS)


def keep_unmasked(pixels: list[np.ndarray], edit: EditInputs) -> list[np.ndarray]:
    """The images with the original pixels outside the mask, where the edit asks for them (at the
    images' size: the original and its mask are resized to it if need be)."""
    if not edit.keep_unmasked or edit.mask is None or not pixels:
        return pixels
    height, width = pixels[0].shape[:2]
    original = edit.images[0]
    mask = edit.mask
    if original.shape[:2] != (height, width):
        original = np.asarray(
            Image.fromarray(original).resize((width, height), Image.Resampling.LANCZOS)
        )
        mask = np.asarray(
            Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST), dtype=bool
        )
    repaint = mask[..., np.newaxis]
    return [np.where(repaint, image, original) for image in pixels]
