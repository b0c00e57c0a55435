"""The built-in catalog: OpenAI's dall-e names mapped onto open models with OpenAI's limits."""

from __future__ import annotations

from typing import Any

DALL_E_2_SIZES = ("256x256", "512x512", "1024x1024")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")

DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    # SD-Turbo makes an image in one to four steps without guidance: the fast, small model.
    "dall-e-2": {
        "source": "stabilityai/sd-turbo",
        "licence": "Stability AI Community License (sd-turbo model card)",
        "owned_by": "stabilityai",
        "max_prompt_chars": 1000,
        "max_n": 10,
        "sizes": DALL_E_2_SIZES,
        "default_size": "1024x1024",
        "qualities": {"standard": {"steps": 2, "guidance_scale": 0.0}},
        "default_quality": "standard",
    },
    # SDXL base: the SDXL-class model; hd spends more steps, style changes wording and guidance.
    "dall-e-3": {
        "source": "stabilityai/stable-diffusion-xl-base-1.0",
        "licence": "CreativeML Open RAIL++-M",
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
    },
}
