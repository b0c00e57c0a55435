"""The suite depends on nothing outside the repository and on none of the developer's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import openai_schemas
from tests.system_programs import require_program

PROBE = Path(__file__).with_name("environment_probe.py")

# What a developer running their own Easel against PostgreSQL and S3 may have exported: each one
# would make a test server fail to start, or write somewhere else, if it reached the tests.
DEVELOPER_SETTINGS = {
    "EASEL_DATABASE_URL": "postgresql://easel@127.0.0.1:9/production",
    "EASEL_STORAGE": "s3://production-images/easel",
    "EASEL_ADMIN_KEY": "too-short",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "AKIAPRODUCTION",
    "AWS_SECRET_ACCESS_KEY": "production-secret",
}


@pytest.mark.slow
def test_a_developers_exported_settings_do_not_reach_the_tests(tmp_path: Path) -> None:
    # A pytest of its own (in process, pytest would share and then reset this one's modules).
    command = [sys.executable, "-m", "pytest", str(PROBE), "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "--basetemp", str(tmp_path / "probe")],
        cwd=PROBE.parents[1],
        env={**os.environ, **DEVELOPER_SETTINGS},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_openai_schemas_ship_with_the_tests() -> None:
    assert openai_schemas.SCHEMAS_FILE.is_relative_to(Path(__file__).parent)
    openai_schemas.validate(
        {"created": 1, "data": [{"url": "https://x.test/a.png"}]}, "ImagesResponse"
    )
    openai_schemas.validate({"object": "list", "data": []}, "ListModelsResponse")


def test_a_missing_system_program_skips_here_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "chromium"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium not found.*scripts/setup"):
        require_program(missing, "chromium not found")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium not found"):
        require_program(missing, "chromium not found")
    missing.touch()
    assert require_program(missing, "chromium not found") == missing
