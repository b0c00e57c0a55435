"""Shared fixtures: a clean environment, tiny pipelines on disk, a running `easel serve`, the app
in process, an API key, SDK clients, a PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
import torch

from easel.catalog import Catalog
from easel.devtools.tiny_pipelines import (
    build_tiny_flux2_klein,
    build_tiny_matting,
    build_tiny_qwen_image,
    build_tiny_sd,
    build_tiny_sdxl,
    build_tiny_taesd,
    build_tiny_zimage,
)
from easel.settings import Settings
from tests.gpt_server import gpt_overrides
from tests.inprocess import InProcessApp, running_app
from tests.postgres import PostgresCluster, start_cluster
from tests.s3 import S3Server, start_s3
from tests.server import RunningServer, create_key, start_server

# Settings a developer may have exported for their own server: in a test they would point Easel at
# real infrastructure (EASEL_DATABASE_URL, EASEL_STORAGE=s3://..., AWS credentials).
DEVELOPER_SETTINGS_PREFIXES = ("EASEL_", "AWS_")


def _isolate_environment(patch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for name in [name for name in os.environ if name.startswith(DEVELOPER_SETTINGS_PREFIXES)]:
        patch.delenv(name)
    patch.setenv("EASEL_DATA_DIR", str(data_dir))
    # The built-in prompt rewriter's weights cannot be downloaded here: tests that rewrite set
    # their own rewriter.
    patch.setenv("EASEL_PROMPT_REWRITER", "off")
    # boto3 also reads ~/.aws: point it at files that do not exist.
    patch.setenv("AWS_CONFIG_FILE", str(data_dir / "no-aws-config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(data_dir / "no-aws-credentials"))


@pytest.fixture(scope="session", autouse=True)
def clean_session_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The clean environment for the session's fixtures too: they are set up before any test's
    fixtures (servers, PostgreSQL, Ray), and their subprocesses inherit this environment."""
    with pytest.MonkeyPatch.context() as patch:
        _isolate_environment(patch, tmp_path_factory.mktemp("session-data"))
        yield


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data directory and none of the developer's EASEL_*/AWS_* settings."""
    _isolate_environment(monkeypatch, tmp_path / "easel-data")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("pipelines") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("pipelines") / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_taesd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_taesd(tmp_path_factory.mktemp("decoders") / "tiny-taesd")


@pytest.fixture(scope="session")
def tiny_zimage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_zimage(tmp_path_factory.mktemp("pipelines") / "tiny-zimage")


@pytest.fixture(scope="session")
def tiny_flux2_klein(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flux2_klein(tmp_path_factory.mktemp("pipelines") / "tiny-flux2-klein")


@pytest.fixture(scope="session")
def tiny_qwen_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_image(tmp_path_factory.mktemp("pipelines") / "tiny-qwen-image")


@pytest.fixture(scope="session")
def tiny_matting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight background-matting model in the hub layout `easel serve` loads."""
    return build_tiny_matting(tmp_path_factory.mktemp("tiny-matting"))


@pytest.fixture(scope="session")
def broken_scheduler_pipeline(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline that loads but fails when run: its scheduler has fewer training timesteps than
    the steps the catalog asks for, which diffusers refuses at call time."""
    copy = tmp_path_factory.mktemp("broken") / "pipeline"
    shutil.copytree(tiny_sd, copy)
    config_path = copy / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["num_train_timesteps"] = 1
    config_path.write_text(json.dumps(config))
    return copy


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_sdxl: Path
) -> Iterator[RunningServer]:
    """`easel serve` with dall-e-2 on the SD 1.x layout and dall-e-3 on the SDXL layout, and the
    GPT names on the layout of their built-in pipelines."""
    data_dir = tmp_path_factory.mktemp("data")
    gpt_models = [
        arg for override in gpt_overrides(tiny_sd, tiny_sdxl) for arg in ("--model", override)
    ]
    running = start_server(
        data_dir, "--model", f"dall-e-2={tiny_sd}", "--model", f"dall-e-3={tiny_sdxl}", *gpt_models
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api_key(server: RunningServer) -> str:
    return create_key(server.data_dir)


@pytest.fixture(scope="session")
def client(server: RunningServer, api_key: str) -> openai.OpenAI:
    # No retries: every answer the tests see is the server's first.
    return openai.OpenAI(
        api_key=api_key, base_url=server.base_url + "/v1", max_retries=0, timeout=300
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncio only, with one event loop for the session: the in-process app outlives a test."""
    return "asyncio"


@pytest.fixture(scope="session")
async def app(
    anyio_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_sdxl: Path,
) -> AsyncIterator[InProcessApp]:
    """The app of `easel serve` with the `server` fixture's models, in this process."""
    catalog = Catalog.build(
        overrides=[
            f"dall-e-2={tiny_sd}",
            f"dall-e-3={tiny_sdxl}",
            *gpt_overrides(tiny_sd, tiny_sdxl),
        ]
    )
    async with running_app(
        Settings(data_dir=tmp_path_factory.mktemp("in-process")), catalog
    ) as app:
        yield app


@pytest.fixture
def sdk(app: InProcessApp) -> openai.AsyncOpenAI:
    return app.sdk()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session (fails, never skips, when CI is set)."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3-compatible server on a free loopback port, with the bucket `easel-images`."""
    running = start_s3()
    yield running
    running.server.stop()
