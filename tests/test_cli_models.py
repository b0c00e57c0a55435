"""`easel models list|pull|rm` against a Hugging Face cache in a temporary HF_HOME.

No weights can be downloaded here: the cache entry is written in huggingface_hub's own layout from
a tiny pipeline, and pulls are tried offline and against an address where nothing listens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cli import run_easel
from tests.hub_cache import add_to_hub_cache
from tests.images import open_png
from tests.server import free_port

HUB_ID = "easel-test/tiny-sd"


@pytest.fixture
def hf_home(tmp_path: Path, tiny_sd: Path) -> Path:
    home = tmp_path / "hf-home"
    add_to_hub_cache(home / "hub", HUB_ID, tiny_sd)
    return home


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        f"  tiny-hub:\n    source: {HUB_ID}\n    licence: MIT\n    sizes: [256x256]\n"
        "    default_size: 256x256\n    qualities: {standard: {steps: 2, guidance_scale: 0}}\n"
        "  absent:\n    source: easel-test/not-downloaded\n"
    )
    return path


def offline(hf_home: Path) -> dict[str, str]:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def rows(stdout: str) -> dict[str, str]:
    """Table lines by model name (the first cell)."""
    return {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") > 3}


def test_list_shows_source_presence_size_licence_and_sizes(
    hf_home: Path, config: Path, tiny_sd: Path
) -> None:
    result = run_easel(
        "models",
        "list",
        "--config",
        str(config),
        "--model-source",
        f"dall-e-2={tiny_sd}",
        env=offline(hf_home),
    )
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert {"dall-e-2", "dall-e-3", "tiny-hub", "absent"} <= set(table)
    assert HUB_ID in table["tiny-hub"] and "│ yes" in table["tiny-hub"]
    assert (
        " MB" in table["tiny-hub"] and "MIT" in table["tiny-hub"] and "256x256" in table["tiny-hub"]
    )
    assert "│ no" in table["absent"]
    # This machine has no accelerator: the built-in models are SD-Turbo with TAESD.
    assert "│ no" in table["dall-e-3"] and "stabilityai/sd-turbo" in table["dall-e-3"]
    assert "│ yes" in table["dall-e-2"] and "1792x1024" not in table["dall-e-2"]
    assert "Stability AI Community" in table["dall-e-3"]


@pytest.mark.slow
def test_a_cached_hub_model_generates_offline(hf_home: Path, config: Path, tmp_path: Path) -> None:
    result = run_easel(
        "generate",
        "a cached fox",
        "--model",
        "tiny-hub",
        "--config",
        str(config),
        "--seed",
        "1",
        "--out",
        str(tmp_path / "out"),
        env=offline(hf_home),
    )
    assert result.returncode == 0, result.stderr
    with open_png(result.stdout.strip()) as image:
        assert image.size == (256, 256) and image.text["model"] == "tiny-hub"


@pytest.mark.slow
def test_rm_asks_first_then_frees_the_space(hf_home: Path, config: Path) -> None:
    repo_dir = hf_home / "hub" / "models--easel-test--tiny-sd"
    declined = run_easel(
        "models", "rm", "tiny-hub", "--config", str(config), stdin="n\n", env=offline(hf_home)
    )
    assert declined.returncode == 1
    assert "Delete easel-test/tiny-sd from the Hugging Face cache, freeing" in declined.stdout
    assert repo_dir.exists()

    accepted = run_easel("models", "rm", HUB_ID, stdin="y\n", env=offline(hf_home))
    assert accepted.returncode == 0, accepted.stderr
    assert "Removed easel-test/tiny-sd, freed" in accepted.stdout
    assert not repo_dir.exists()

    again = run_easel(
        "models", "rm", "tiny-hub", "--config", str(config), "--yes", env=offline(hf_home)
    )
    assert again.returncode == 0
    assert "nothing to remove" in again.stderr


@pytest.mark.slow
def test_rm_never_deletes_a_local_directory(tiny_sd: Path, tmp_path: Path) -> None:
    result = run_easel(
        "models",
        "rm",
        "dall-e-2",
        "--model-source",
        f"dall-e-2={tiny_sd}",
        "--yes",
        env=offline(tmp_path),
    )
    assert result.returncode == 1
    assert "local directory" in result.stderr
    assert (tiny_sd / "model_index.json").is_file()


def test_pull_of_a_cached_model_works_offline_as_serve_does(hf_home: Path, config: Path) -> None:
    # `easel serve` loads this model offline (test_a_cached_hub_model_generates_offline); pull
    # selects files by the same rule, so it finds everything there and prints the snapshot.
    result = run_easel("models", "pull", "tiny-hub", "--config", str(config), env=offline(hf_home))
    assert result.returncode == 0, result.stderr
    snapshot = Path(result.stdout.strip())
    assert snapshot.is_relative_to(hf_home / "hub" / "models--easel-test--tiny-sd" / "snapshots")
    assert (snapshot / "model_index.json").is_file()


@pytest.mark.slow
def test_pull_offline_says_so(tmp_path: Path) -> None:
    result = run_easel("models", "pull", "dall-e-2", env=offline(tmp_path))
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "Cannot download stabilityai/sd-turbo: HF_HUB_OFFLINE is set" in message
    assert "--model NAME=/path/to/pipeline" in message


@pytest.mark.slow
def test_pull_without_network_says_so(tmp_path: Path) -> None:
    # Nothing listens on this port: the hub cannot be reached, as on a machine without internet.
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    result = run_easel("models", "pull", "dall-e-3", env=env)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "Cannot download stabilityai/sd-turbo: the Hugging Face hub cannot be reached" in message


class _GatedHub(BaseHTTPRequestHandler):
    """Answers every request as the hub answers for a gated model without an accepted licence."""

    def _refuse(self) -> None:
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model is restricted.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _refuse

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def gated_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_pull_of_a_gated_model_asks_for_a_token(tmp_path: Path, gated_hub: str) -> None:
    # Fault injection: no gated repository can be reached from here, so a stand-in server gives
    # the hub's answer for one (401 with X-Error-Code: GatedRepo).
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": gated_hub}
    result = run_easel("models", "pull", "some-org/gated-model", env=env)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "some-org/gated-model is a gated model" in message and "HF_TOKEN" in message
