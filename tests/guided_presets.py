"""A dall-e-3 entry with the presets of a guidance-taking model (SDXL-era: 25 and 40 steps,
guidance 5-8, English negative prompts), for tests of what Easel does with presets that would
burn a guidance-distilled checkpoint. The built-in entries are fitted to distilled models already,
so they cannot show it."""

from __future__ import annotations

from typing import Any

from easel.catalog.defaults import DEFAULT_MODELS, merged_entry

GUIDED_DALL_E_3: dict[str, Any] = {
    "qualities": {
        "standard": {"steps": 25, "guidance_scale": 7.0},
        "hd": {"steps": 40, "guidance_scale": 7.0},
    },
    "styles": {
        "vivid": {
            "prompt_template": "{prompt}, vivid saturated colors, dramatic lighting",
            "negative_prompt": "dull, washed out, flat lighting, blurry",
            "guidance_scale": 8.0,
        },
        "natural": {
            "prompt_template": "{prompt}, natural lighting, realistic photograph",
            "negative_prompt": "oversaturated, cartoon, blurry",
            "guidance_scale": 5.0,
        },
    },
}


def guided_dall_e_3(source: str) -> dict[str, Any]:
    """The built-in dall-e-3 entry's rules on `source`, with guided presets."""
    return merged_entry(DEFAULT_MODELS["dall-e-3"], {"source": source, **GUIDED_DALL_E_3})
