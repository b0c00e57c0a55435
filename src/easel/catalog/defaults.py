"""The built-in catalog: OpenAI's model names mapped onto open models with OpenAI's limits."""

from __future__ import annotations

from typing import Any

DALL_E_2_SIZES = ("256x256", "512x512", "1024x1024")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536")

SD_TURBO = "stabilityai/sd-turbo"
SD_TURBO_LICENCE = "Stability AI Community License (sd-turbo model card)"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_LICENCE = "CreativeML Open RAIL++-M"

# The GPT image families' rules. Their recommended model (Qwen-Image-2512, models-2026.md 3.2)
# needs the DiT support of issue 12, so they run SDXL base for now, as dall-e-3 does; `auto`
# quality is medium: dall-e-3's standard steps.
_GPT_IMAGE: dict[str, Any] = {
    "source": SDXL_BASE,
    "licence": SDXL_LICENCE,
    "owned_by": "stabilityai",
    "max_prompt_chars": 32000,
    "max_n": 10,
    "sizes": GPT_IMAGE_SIZES,
    "default_size": "1024x1024",
    "qualities": {
        "low": {"steps": 15, "guidance_scale": 7.0},
        "medium": {"steps": 25, "guidance_scale": 7.0},
        "high": {"steps": 40, "guidance_scale": 7.0},
    },
    "default_quality": "medium",
    # OpenAI's edit inputs for its GPT image models: up to 16 png/webp/jpg files under 50 MB.
    "max_input_images": 16,
    "input_formats": ("png", "jpeg", "webp"),
    "max_input_bytes": 50 * 1024 * 1024,
    "square_inputs": False,
    "accepts_input_fidelity": True,
}

# What an entry with `family:` starts from; its own fields win. An operator adds a later GPT name
# with one YAML line, e.g. `gpt-image-2.5-flare: {family: gpt-image-2}`.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt-image": {**_GPT_IMAGE, "family": "gpt-image"},
    "gpt-image-2": {**_GPT_IMAGE, "family": "gpt-image-2"},
}


def with_family_defaults(entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` over the defaults of the family it names (none: the generic defaults)."""
    return {**FAMILY_DEFAULTS.get(str(entry.get("family")), {}), **entry}


DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    # SD-Turbo makes an image in one to four steps without guidance: the fast, small model.
    "dall-e-2": {
        "source": SD_TURBO,
        "licence": SD_TURBO_LICENCE,
        "owned_by": "stabilityai",
        "max_prompt_chars": 1000,
        "max_n": 10,
        "sizes": DALL_E_2_SIZES,
        "default_size": "1024x1024",
        "qualities": {"standard": {"steps": 2, "guidance_scale": 0.0}},
        "default_quality": "standard",
        "variation_strength": 0.6,
    },
    # SDXL base: the SDXL-class model; hd spends more steps, style changes wording and guidance.
    "dall-e-3": {
        "source": SDXL_BASE,
        "licence": SDXL_LICENCE,
        "owned_by": "stabilityai",
        "max_prompt_chars": 4000,
        "max_n": 1,
        "sizes": DALL_E_3_SIZES,
        "default_size": "1024x1024",
        "qualities": {
            "standard": {"steps": 25, "guidance_scale": 7.0},
            "hd": {"steps": 40, "guidance_scale": 7.0},
        },
        "default_quality": "standard",
        "styles": {
            "vivid": {
                "prompt_template": "{prompt}, vivid saturated colors, dramatic lighting, "
                "high contrast, hyper-detailed",
                "negative_prompt": "dull, washed out, flat lighting, blurry, low quality",
                "guidance_scale": 8.0,
            },
            "natural": {
                "prompt_template": "{prompt}, natural lighting, true-to-life colors, "
                "realistic photograph",
                "negative_prompt": "oversaturated, cartoon, illustration, exaggerated, "
                "blurry, low quality",
                "guidance_scale": 5.0,
            },
        },
        "default_style": "vivid",
        "returns_revised_prompt": True,
        # OpenAI never offered edits or variations with dall-e-3.
        "max_input_images": 0,
        "prompt_rewrite": "expand",
    },
    "gpt-image-1": with_family_defaults({"family": "gpt-image"}),
    "gpt-image-1.5": with_family_defaults({"family": "gpt-image"}),
    # The cheap tier: SD-Turbo as dall-e-2 (models-2026.md recommends Z-Image-Turbo, issue 12).
    "gpt-image-1-mini": with_family_defaults(
        {
            "family": "gpt-image",
            "source": SD_TURBO,
            "licence": SD_TURBO_LICENCE,
            "accepts_input_fidelity": False,
            "qualities": {
                "low": {"steps": 1, "guidance_scale": 0.0},
                "medium": {"steps": 2, "guidance_scale": 0.0},
                "high": {"steps": 4, "guidance_scale": 0.0},
            },
        }
    ),
    "gpt-image-2": with_family_defaults({"family": "gpt-image-2"}),
    "gpt-image-2-2026-04-21": with_family_defaults({"family": "gpt-image-2"}),
}
