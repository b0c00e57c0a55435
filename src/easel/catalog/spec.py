"""One model's rules: accepted values per request field, and the pipeline settings they select."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from easel.catalog.edit import EditInputs
from easel.catalog.free_sizes import check_free_size
from easel.catalog.output import Family, OutputPlan, OutputRequest, output_plan
from easel.errors import InvalidRequestError, invalid_value, unknown_parameter
from easel.images.inputs import InputFormat
from easel.prompts.language import is_english

# The GPT families' `size` and `quality` value that means the model's default.
AUTO = "auto"

SIZE_PATTERN = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")

# Whether a model's licence lets a business use its images: "limited" licences set conditions
# (a revenue cap, say) that the licence text names.
CommercialUse = Literal["allowed", "limited", "not allowed", "unknown"]

GENERIC_SIZES = (
    "256x256",
    "512x512",
    "768x768",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "1792x1024",
    "1024x1792",
)


def parse_size(size: str) -> tuple[int, int]:
    """'1792x1024' -> (1792, 1024); raises ValueError for anything else."""
    match = SIZE_PATTERN.match(size)
    if not match:
        raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
    return int(match.group(1)), int(match.group(2))


class QualityPreset(BaseModel):
    """What a `quality` value means for the pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=1, le=500)
    guidance_scale: float = Field(ge=0.0, le=50.0)


class StylePreset(BaseModel):
    """What a `style` value means for the pipeline: prompt wording, negative prompt, guidance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_template: str = "{prompt}"
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)

    @model_validator(mode="after")
    def _template_has_prompt(self) -> StylePreset:
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {prompt}")
        return self


class DeploymentSpec(BaseModel):
    """How a model runs under Ray Serve (`easel cluster`); the single-process server ignores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: one GPU per replica when the Ray cluster has GPUs, else none.
    gpus_per_replica: float | None = Field(default=None, ge=0)
    cpus_per_replica: float = Field(default=1.0, ge=0)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    # Ray adds replicas when each one holds more ongoing requests than this.
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    # Requests a replica takes at once: what its engine can batch and queue.
    max_ongoing_requests: int = Field(default=8, ge=1)
    # Requests waiting at each caller for a free replica; beyond this the client gets 429.
    max_queued_requests: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _replica_range(self) -> DeploymentSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


@dataclass(frozen=True)
class GenerationPlan:
    """A validated request, turned into exactly what the engine runs."""

    model: str
    prompt: str
    negative_prompt: str | None
    n: int
    size: str  # as the request gave it (or the model's default): what usage is reported by
    width: int
    height: int
    steps: int
    guidance_scale: float
    revised_prompt: str | None
    user_prompt: str
    quality: str
    style: str | None
    # The input images of an edit or a variation; None for a generation.
    edit: EditInputs | None = None


class ModelSpec(BaseModel):
    """A catalog entry. Fields left out of a config file take these generic defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    # Whose request rules the name follows: OpenAI's dall-e models' or a GPT image family's.
    family: Family = "dall-e"
    licence: str = "see the model card"
    commercial_use: CommercialUse = "unknown"
    # An AutoencoderTiny (hub id or directory) that replaces the pipeline's VAE: TAESD decodes an
    # SD image in a fraction of the full VAE's time.
    decoder: str | None = Field(default=None, min_length=1)
    # The pipeline a GPT name's multi-image edits run on (hub id or directory); None: its source.
    edits_source: str | None = Field(default=None, min_length=1)
    owned_by: str = "easel"
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_n: int = Field(default=10, ge=1, le=128)
    sizes: tuple[str, ...] = GENERIC_SIZES
    default_size: str = "1024x1024"
    qualities: dict[str, QualityPreset] = Field(
        default_factory=lambda: {
            "standard": QualityPreset(steps=30, guidance_scale=7.0),
            "hd": QualityPreset(steps=50, guidance_scale=7.0),
        }
    )
    default_quality: str = "standard"
    # No styles means the model does not accept the `style` field at all.
    styles: dict[str, StylePreset] = Field(default_factory=dict)
    default_style: str | None = None
    negative_prompt: str | None = None
    returns_revised_prompt: bool = False
    # Edits (catalog.edit_rules): how many input images a request may bring (0: no edits), in which
    # formats and sizes, and how far image-to-image moves from them at each `input_fidelity`.
    max_input_images: int = Field(default=1, ge=0, le=16)
    input_formats: tuple[InputFormat, ...] = ("png",)
    max_input_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    square_inputs: bool = True
    accepts_input_fidelity: bool = False
    edit_strength: float = Field(default=0.75, gt=0.0, le=1.0)
    high_fidelity_strength: float = Field(default=0.45, gt=0.0, le=1.0)
    # How far a variation moves from its image; None: the model makes no variations.
    variation_strength: float | None = Field(default=None, gt=0.0, le=1.0)
    # What the prompt rewriter does to a prompt before the pipeline reads it (easel.prompts):
    # expand it into a detailed description, translate it when its text encoder cannot read its
    # language, or nothing.
    prompt_rewrite: Literal["expand", "translate", "off"] = "translate"
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        for size in self.sizes:
            parse_size(size)
        if self.default_size not in self.sizes:
            raise ValueError(f"default_size {self.default_size!r} is not one of sizes")
        if self.default_quality not in self.qualities:
            raise ValueError(f"default_quality {self.default_quality!r} is not one of qualities")
        if self.styles and self.default_style not in self.styles:
            raise ValueError(f"default_style {self.default_style!r} is not one of styles")
        if self.edits_source is not None and not self.is_gpt_image:
            raise ValueError(
                "edits_source is for GPT image families (multi-image edits); "
                f"family {self.family!r} edits with its source"
            )
        return self

    def plan(
        self,
        *,
        prompt: str,
        n: int | None,
        size: str | None,
        quality: str | None,
        style: str | None,
    ) -> GenerationPlan:
        """Check a request's fields against this model's rules; `None` means the default."""
        self._check_prompt(prompt)
        return self._plan(prompt=prompt, n=n, size=size, quality=quality, style=style)

    def variation_plan(self, *, n: int | None, size: str | None) -> GenerationPlan:
        """A variation's plan: a generation's rules without a prompt, which variations lack."""
        return self._plan(prompt="", n=n, size=size, quality=None, style=None)

    def _plan(
        self,
        *,
        prompt: str,
        n: int | None,
        size: str | None,
        quality: str | None,
        style: str | None,
    ) -> GenerationPlan:
        count = self._check_n(n)
        size, (width, height) = self._size(size)
        quality = self._quality(quality)
        preset = self.qualities[quality]
        style_preset, style = self._style(style)

        pipeline_prompt = self._styled(prompt, style_preset)
        guidance = preset.guidance_scale
        if style_preset.guidance_scale is not None:
            guidance = style_preset.guidance_scale
        return GenerationPlan(
            model=self.name,
            prompt=pipeline_prompt,
            negative_prompt=style_preset.negative_prompt or self.negative_prompt,
            n=count,
            size=size,
            width=width,
            height=height,
            steps=preset.steps,
            guidance_scale=guidance,
            revised_prompt=self._revised(prompt, pipeline_prompt),
            user_prompt=prompt,
            quality=quality,
            style=style,
        )

    def revise(self, plan: GenerationPlan, text: str) -> GenerationPlan:
        """`plan` with the prompt rewriter's `text` in place of the user's prompt."""
        style_preset = self.styles[plan.style] if plan.style is not None else StylePreset()
        pipeline_prompt = self._styled(text, style_preset)
        return replace(
            plan,
            prompt=pipeline_prompt,
            revised_prompt=self._revised(plan.user_prompt, pipeline_prompt),
        )

    @staticmethod
    def _styled(prompt: str, style_preset: StylePreset) -> str:
        # The style templates are English words: a prompt in another language goes without them
        # (its style still sets the guidance and the negative prompt).
        if not is_english(prompt):
            return prompt
        return style_preset.prompt_template.format(prompt=prompt)

    def _revised(self, prompt: str, pipeline_prompt: str) -> str | None:
        # Whatever the pipeline reads instead of the user's prompt is shown, whichever the model.
        if self.returns_revised_prompt or pipeline_prompt != prompt:
            return pipeline_prompt
        return None

    @property
    def is_gpt_image(self) -> bool:
        """GPT image models always answer b64_json and take OpenAI's output fields."""
        return self.family != "dall-e"

    @property
    def takes_edits(self) -> bool:
        """Whether /v1/images/edits accepts this model (dall-e-3, as OpenAI's, does not)."""
        return self.max_input_images > 0

    @property
    def makes_variations(self) -> bool:
        """Whether /v1/images/variations accepts this model (OpenAI's: dall-e-2 only)."""
        return self.variation_strength is not None

    @property
    def has_free_sizes(self) -> bool:
        """gpt-image-2 takes any WIDTHxHEIGHT within OpenAI's limits besides its listed sizes."""
        return self.family == "gpt-image-2"

    def plan_output(self, request: OutputRequest) -> OutputPlan:
        """The request's output format, or a 400 naming a field this model cannot honour."""
        return output_plan(self.family, request)

    def _size(self, size: str | None) -> tuple[str, tuple[int, int]]:
        if size is None or (size == AUTO and self.is_gpt_image):
            size = self.default_size
        if size in self.sizes:
            return size, parse_size(size)
        if not self.has_free_sizes:
            raise invalid_value("size", size, self._with_auto(self.sizes))
        try:
            width, height = parse_size(size)
        except ValueError:
            raise invalid_value("size", size, self._with_auto(self.sizes)) from None
        check_free_size(size, width, height)
        return size, (width, height)

    def _quality(self, quality: str | None) -> str:
        if quality is None or (quality == AUTO and self.is_gpt_image):
            return self.default_quality
        if quality not in self.qualities:
            raise invalid_value("quality", quality, self._with_auto(self.qualities))
        return quality

    def _with_auto(self, values: Iterable[str]) -> tuple[str, ...]:
        return (*values, AUTO) if self.is_gpt_image else tuple(values)

    def _check_prompt(self, prompt: str) -> None:
        if not prompt.strip():
            raise InvalidRequestError(
                "Invalid 'prompt': string too short. Expected a non-empty string.",
                param="prompt",
                code="empty_string",
            )
        if len(prompt) > self.max_prompt_chars:
            # OpenAI words this refusal differently for its GPT image models.
            message = (
                f"Invalid 'prompt': string too long. Expected a string with maximum length "
                f"{self.max_prompt_chars}, but got a string with length {len(prompt)} instead."
                if self.is_gpt_image
                else f"Prompt must be length {self.max_prompt_chars} or less. Your prompt length "
                f"is {len(prompt)}. Please reduce your prompt length."
            )
            raise InvalidRequestError(
                message,
                param="prompt",
                code="string_above_max_length",
            )

    def _check_n(self, n: int | None) -> int:
        if n is None:
            return 1
        if n < 1:
            raise InvalidRequestError(
                f"{n} is less than the minimum of 1 - 'n'",
                param="n",
                code="integer_below_min_value",
            )
        if self.max_n == 1 and n != 1:
            raise InvalidRequestError(
                "You must provide n=1 for this model.", param="n", code="integer_above_max_value"
            )
        if n > self.max_n:
            raise InvalidRequestError(
                f"{n} is greater than the maximum of {self.max_n} - 'n'",
                param="n",
                code="integer_above_max_value",
            )
        return n

    def _style(self, style: str | None) -> tuple[StylePreset, str | None]:
        if not self.styles:
            if style is not None:
                raise unknown_parameter("style")
            return StylePreset(), None
        style = style if style is not None else self.default_style
        if style not in self.styles:
            raise invalid_value("style", style, self.styles)
        return self.styles[style], style
