"""openai-node's image edits (masked, streamed) and variations against `easel serve`."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path

from PIL import Image

from tests.edit_images import mask_png, png
from tests.server import RunningServer

NODE_TESTS = Path(__file__).parent / "node"


def image_size(b64_json: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64_json))) as image:
        return image.size


def test_openai_node_edits_and_varies_images(
    server: RunningServer, api_key: str, tmp_path: Path
) -> None:
    # The node SDK, installed by scripts/setup (npm ci in tests/node).
    assert (NODE_TESTS / "node_modules" / "openai").is_dir(), "run scripts/setup"
    image = tmp_path / "photo.png"
    image.write_bytes(png(256, 256))
    mask = tmp_path / "mask.png"
    mask.write_bytes(mask_png(256, 256, (64, 64, 192, 192)))
    result = subprocess.run(
        [
            "node",
            str(NODE_TESTS / "edit_images.mjs"),
            server.base_url + "/v1",
            api_key,
            str(image),
            str(mask),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answers = json.loads(result.stdout)

    assert [image_size(b64) for b64 in answers["masked"]] == [(256, 256)]

    events = answers["events"]
    assert [(event["type"], event["partial_image_index"]) for event in events] == [
        ("image_edit.partial_image", 0),
        ("image_edit.partial_image", 1),
        ("image_edit.completed", None),
    ]
    assert image_size(events[-1]["b64_json"]) == (1024, 1024)
    assert all(image_size(event["b64_json"])[0] > 0 for event in events[:-1])

    assert [image_size(b64) for b64 in answers["variations"]] == [(256, 256), (256, 256)]
