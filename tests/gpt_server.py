"""`easel serve` with every GPT image name on the tiny pipelines, plus one an operator adds."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.server import RunningServer, start_server

# The built-in GPT names and the pipeline each runs in tests: the layout of its built-in source.
GPT_MODELS = {
    "gpt-image-1": "sdxl",
    "gpt-image-1.5": "sdxl",
    "gpt-image-1-mini": "sd",
    "gpt-image-2": "sdxl",
    "gpt-image-2-2026-04-21": "sdxl",
}
# A later OpenAI name, added by an operator with its family and a source only.
OPERATOR_MODEL = "gpt-image-2.5-flare"


def start_gpt_server(data_dir: Path, tiny_sd: Path, tiny_sdxl: Path) -> RunningServer:
    pipelines = {"sd": str(tiny_sd), "sdxl": str(tiny_sdxl)}
    models: dict[str, dict[str, str]] = {
        name: {"source": pipelines[layout]} for name, layout in GPT_MODELS.items()
    }
    models["dall-e-2"] = {"source": str(tiny_sd)}
    models[OPERATOR_MODEL] = {"family": "gpt-image-2", "source": str(tiny_sdxl)}
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "easel.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    return start_server(data_dir, "--config", str(config))


def gpt_overrides(tiny_sd: Path, tiny_sdxl: Path) -> list[str]:
    """`NAME=SOURCE` for every built-in GPT name on the tiny pipeline of its source's layout, so
    a test server loads (and is ready with) no hub weights."""
    pipelines = {"sd": tiny_sd, "sdxl": tiny_sdxl}
    return [f"{name}={pipelines[layout]}" for name, layout in GPT_MODELS.items()]
