"""The suite depends on nothing outside the repository and on none of the developer's settings."""

from __future__ import annotations

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
def test_a_developers_exported_settings_do_not_reach_the_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in DEVELOPER_SETTINGS.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_probe=PROBE.read_text())
    # A pytest session of its own, with this suite's conftest: its session fixtures start afresh.
    result = pytester.runpytest_inprocess("-p", "tests.conftest")
    result.assert_outcomes(passed=2)


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
