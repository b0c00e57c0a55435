"""The built-in catalog: OpenAI's model names mapped onto open models with OpenAI's limits, on the
open model that fits the machine (models-2026.md 3.2-3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from easel.catalog.machine import CPU_ONLY, LARGE_MODEL_MEMORY_BYTES, Machine, gib

DALL_E_2_SIZES = ("256x256", "512x512", "1024x1024")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536")

Z_IMAGE_TURBO = "Tongyi-MAI/Z-Image-Turbo"
FLUX2_KLEIN_4B = "black-forest-labs/FLUX.2-klein-4B"
SD_TURBO = "stabilityai/sd-turbo"
TAESD = "madebyollin/taesd"

# What a catalog entry says about its weights. An entry that names another source keeps none of
# these from the entry it changes: they describe the built-in weights, not the operator's.
WEIGHTS_FIELDS = ("licence", "commercial_use", "decoder")


def merged_entry(entry: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`change` over `entry`; a change of source drops what described the old weights."""
    if "source" in change and change["source"] != entry.get("source"):
        entry = {key: value for key, value in entry.items() if key not in WEIGHTS_FIELDS}
    return {**entry, **change}


@dataclass(frozen=True)
class BuiltinModel:
    """One open model the built-in names run on, with the steps each name's quality takes."""

    title: str
    weights: dict[str, Any]
    # Steps per quality of each rule set: "dall-e-2", "dall-e-3", "gpt-image", "gpt-image-1-mini".
    steps: dict[str, dict[str, int]]
    # The model GPT names' multi-image edits run on (the edits work wires it into the engine).
    edits_source: str | None


# 6B DiT with a Qwen3-4B encoder (Chinese and English), guidance-distilled for 8 steps; more steps
# sharpen detail a little, fewer than 6 blur it.
Z_IMAGE = BuiltinModel(
    title="Z-Image-Turbo",
    weights={
        "source": Z_IMAGE_TURBO,
        "licence": "Apache-2.0",
        "commercial_use": "allowed",
        "owned_by": "tongyi-mai",
    },
    steps={
        "dall-e-2": {"standard": 8},
        "dall-e-3": {"standard": 8, "hd": 12},
        "gpt-image": {"low": 6, "medium": 8, "high": 12},
        "gpt-image-1-mini": {"low": 4, "medium": 6, "high": 8},
    },
    edits_source=FLUX2_KLEIN_4B,
)

# SD-Turbo makes a 512 px image in one step; the tiny autoencoder decodes it in a fraction of the
# full VAE's time (bench/results/decoders-*.json).
SD_TURBO_TAESD = BuiltinModel(
    title="SD-Turbo with the TAESD decoder",
    weights={
        "source": SD_TURBO,
        "licence": "Stability AI Community (free under US$1M revenue); TAESD: MIT",
        "commercial_use": "limited",
        "owned_by": "stabilityai",
        "decoder": TAESD,
    },
    steps={
        "dall-e-2": {"standard": 1},
        "dall-e-3": {"standard": 2, "hd": 4},
        "gpt-image": {"low": 1, "medium": 2, "high": 4},
        "gpt-image-1-mini": {"low": 1, "medium": 1, "high": 2},
    },
    edits_source=None,
)

# Both built-in models are guidance-distilled, so styles change the wording only: a negative
# prompt or a guidance scale would be ignored or burn the image.
DALL_E_3_STYLES = {
    "vivid": {
        "prompt_template": "{prompt}, vivid saturated colors, dramatic lighting, high contrast, "
        "hyper-detailed"
    },
    "natural": {
        "prompt_template": "{prompt}, natural lighting, true-to-life colors, realistic photograph"
    },
}


def _qualities(steps: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {quality: {"steps": n, "guidance_scale": 0.0} for quality, n in steps.items()}


@dataclass(frozen=True)
class BuiltinCatalog:
    """The built-in entries chosen for one machine, and why."""

    model: BuiltinModel
    reason: str
    models: dict[str, dict[str, Any]]
    # What an entry with `family:` starts from; its own fields win. An operator adds a later GPT
    # name with one YAML line, e.g. `gpt-image-2.5-flare: {family: gpt-image-2}`.
    families: dict[str, dict[str, Any]]

    def with_family_defaults(self, entry: dict[str, Any]) -> dict[str, Any]:
        """`entry` over the defaults of the family it names (none: the generic defaults)."""
        return merged_entry(self.families.get(str(entry.get("family")), {}), entry)

    def origin(self, name: str, source: str) -> str:
        """Why `name` runs `source`: the built-in choice for this machine, or the operator's."""
        builtin = self.models.get(name)
        if builtin is not None and builtin["source"] == source:
            return f"built-in: {self.reason}"
        return "configured"


def choose_builtin_model(machine: Machine) -> tuple[BuiltinModel, str]:
    """The open model every built-in name runs on, and the reason, for `machine`."""
    needs = gib(LARGE_MODEL_MEMORY_BYTES)
    if machine.fits_large_models:
        return Z_IMAGE, f"{machine}: {Z_IMAGE.title} fits (needs {needs})"
    if machine.accelerator == "cuda":
        why = f"under the {needs} {Z_IMAGE.title} needs"
    else:
        why = f"{Z_IMAGE.title} needs a CUDA GPU with {needs}"
    return SD_TURBO_TAESD, f"{machine}: {why}, so {SD_TURBO_TAESD.title} at 512 px"


def default_models(machine: Machine) -> BuiltinCatalog:
    """OpenAI's names, each with its own rules, on the built-in model chosen for `machine`."""
    model, reason = choose_builtin_model(machine)
    steps = model.steps
    gpt_image = {
        **model.weights,
        "max_prompt_chars": 32000,
        "max_n": 10,
        "sizes": GPT_IMAGE_SIZES,
        "default_size": "1024x1024",
        "qualities": _qualities(steps["gpt-image"]),
        # `auto` quality is medium.
        "default_quality": "medium",
        "edits_source": model.edits_source,
        # OpenAI's edit inputs for its GPT image models: up to 16 png/webp/jpg files under 50 MB.
        "max_input_images": 16,
        "input_formats": ("png", "jpeg", "webp"),
        "max_input_bytes": 50 * 1024 * 1024,
        "square_inputs": False,
        "accepts_input_fidelity": True,
    }
    families = {
        "gpt-image": {**gpt_image, "family": "gpt-image"},
        "gpt-image-2": {**gpt_image, "family": "gpt-image-2"},
    }
    models: dict[str, dict[str, Any]] = {
        # The fast one: many small images per request.
        "dall-e-2": {
            **model.weights,
            "max_prompt_chars": 1000,
            "max_n": 10,
            "sizes": DALL_E_2_SIZES,
            "default_size": "1024x1024",
            "qualities": _qualities(steps["dall-e-2"]),
            "default_quality": "standard",
            "variation_strength": 0.6,
        },
        # The careful one: one image, hd spends more steps, style changes the wording.
        "dall-e-3": {
            **model.weights,
            "max_prompt_chars": 4000,
            "max_n": 1,
            "sizes": DALL_E_3_SIZES,
            "default_size": "1024x1024",
            "qualities": _qualities(steps["dall-e-3"]),
            "default_quality": "standard",
            "styles": DALL_E_3_STYLES,
            "default_style": "vivid",
            "returns_revised_prompt": True,
            # OpenAI never offered edits or variations with dall-e-3.
            "max_input_images": 0,
            "prompt_rewrite": "expand",
        },
        "gpt-image-1": families["gpt-image"],
        "gpt-image-1.5": families["gpt-image"],
        # The cheap tier: the same model in fewer steps.
        "gpt-image-1-mini": {
            **families["gpt-image"],
            "qualities": _qualities(steps["gpt-image-1-mini"]),
            "accepts_input_fidelity": False,
        },
        "gpt-image-2": families["gpt-image-2"],
        "gpt-image-2-2026-04-21": families["gpt-image-2"],
    }
    return BuiltinCatalog(model=model, reason=reason, models=models, families=families)


BUILTIN_MODELS = (Z_IMAGE, SD_TURBO_TAESD)

# The built-in entries on a machine without an accelerator: what `Catalog.build()` starts from
# when no machine is given. Their names are the built-in names on every machine.
DEFAULT_MODELS = default_models(CPU_ONLY).models


def is_builtin_source(source: str) -> bool:
    """Whether `source` is the hub id of a built-in model, on any machine."""
    return any(model.weights["source"] == source for model in BUILTIN_MODELS)
