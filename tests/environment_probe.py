"""Run only by tests/test_environment.py, in a pytest started with a developer's Easel and AWS
settings exported: neither a session's server nor a test may see them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import RunningServer, start_server


@pytest.fixture(scope="session")
def session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Sources that do not exist: the server starts at once and no pipeline is loaded.
    running = start_server(
        tmp_path_factory.mktemp("probe"),
        "--model",
        "dall-e-2=/nonexistent",
        "--model",
        "dall-e-3=/nonexistent",
    )
    yield running
    running.stop()


def test_a_session_server_keeps_its_own_sqlite_and_images(session_server: RunningServer) -> None:
    assert (session_server.data_dir / "easel.db").is_file()
    assert (session_server.data_dir / "images").is_dir()


def test_a_test_sees_only_its_own_data_directory(tmp_path: Path) -> None:
    assert Path(os.environ["EASEL_DATA_DIR"]).is_relative_to(tmp_path)
    leaked = {"EASEL_DATABASE_URL", "EASEL_STORAGE", "EASEL_ADMIN_KEY", "AWS_ENDPOINT_URL"}
    assert not leaked & set(os.environ)
