"""Catalog presets fitted to the model family of each entry's pipeline, before any weights load."""

from __future__ import annotations

import logging
from typing import TypeVar

from easel.catalog import Catalog, ModelSpec, QualityPreset, StylePreset
from easel.engine.families import (
    ModelFamily,
    checkpoint_guidance,
    family_for_source,
    fitted_guidance_scale,
    fitted_steps,
    takes_negative_prompt,
)

log = logging.getLogger(__name__)

Value = TypeVar("Value")


def fit_presets_to_families(catalog: Catalog) -> None:
    """Correct, in `catalog`, each entry whose presets would spoil its pipeline's images: on a
    guidance-distilled checkpoint (turbo, schnell, klein) guidance 0, no negative prompt and at
    most a few steps; on a family that reads no negative prompt, none. Each correction is logged
    as a WARNING naming the entry, the field and the old and new value. Entries whose pipeline
    class cannot be read yet (a hub model not downloaded) are left as they are."""
    for spec in list(catalog):
        family = family_for_source(spec.source)
        if family is not None:
            fitted = fitted_spec(spec, family)
            if fitted is not spec:
                catalog.replace(fitted)


def fitted_spec(spec: ModelSpec, family: ModelFamily) -> ModelSpec:
    """`spec` with its presets fitted to `family` (see `fit_presets_to_families`); `spec` itself
    when nothing needed correcting."""
    guidance = checkpoint_guidance(family, spec.source)
    negatives = takes_negative_prompt(family, guidance)
    why = f"{family.name}, {guidance} guidance"
    corrected = False

    def fit(field: str, old: Value, new: Value) -> Value:
        nonlocal corrected
        if new != old:
            corrected = True
            log.warning(
                "model %s: %s corrected from %r to %r (%s)", spec.name, field, old, new, why
            )
        return new

    qualities = {
        name: QualityPreset(
            steps=fit(
                f"qualities.{name}.steps", preset.steps, fitted_steps(guidance, preset.steps)
            ),
            guidance_scale=fit(
                f"qualities.{name}.guidance_scale",
                preset.guidance_scale,
                fitted_guidance_scale(guidance, preset.guidance_scale),
            ),
        )
        for name, preset in spec.qualities.items()
    }
    styles = {
        name: StylePreset(
            prompt_template=style.prompt_template,
            negative_prompt=fit(
                f"styles.{name}.negative_prompt",
                style.negative_prompt,
                style.negative_prompt if negatives else None,
            ),
            guidance_scale=fit(
                f"styles.{name}.guidance_scale",
                style.guidance_scale,
                None
                if style.guidance_scale is None
                else fitted_guidance_scale(guidance, style.guidance_scale),
            ),
        )
        for name, style in spec.styles.items()
    }
    negative_prompt = fit(
        "negative_prompt", spec.negative_prompt, spec.negative_prompt if negatives else None
    )
    if not corrected:
        return spec
    return spec.model_copy(
        update={"qualities": qualities, "styles": styles, "negative_prompt": negative_prompt}
    )
