"""Settings: bad values refused at start naming their variable or flag, the CLI's help and README's
table made from the same fields, and a CLI that starts without PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.devtools.settings_table import with_current_table
from easel.settings import Settings, SettingsError, load_settings
from tests.cli import run_easel

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"EASEL_PORT": "abc"}, "EASEL_PORT='abc': expected an integer from 1 to 65535"),
        (
            {"EASEL_ADAPTIVE_BATCH_SIZE": "enabled"},
            "EASEL_ADAPTIVE_BATCH_SIZE='enabled': expected true or false",
        ),
    ],
)
def test_serve_refuses_a_bad_variable_naming_it(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    result = run_easel("serve", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"easel serve: {line}")
    assert len(result.stderr.splitlines()) == 1  # one line, no traceback


def test_serve_refuses_a_bad_flag_naming_it(tmp_path: Path) -> None:
    result = run_easel("serve", "--data-dir", str(tmp_path), "--log-format", "xml", "--port", "0")
    assert result.returncode == 2
    assert result.stderr == (
        "easel serve: --port='0': expected an integer from 1 to 65535; "
        "--log-format='xml': expected one of json, text\n"
    )


def test_keys_refuse_a_bad_variable_naming_it(tmp_path: Path) -> None:
    result = run_easel("keys", "list", "--data-dir", str(tmp_path), env={"EASEL_LOG_PROMPTS": "2"})
    assert result.returncode == 2
    assert result.stderr.startswith("easel: EASEL_LOG_PROMPTS='2': expected true or false")


def test_variables_and_given_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASEL_PORT", "9000")
    monkeypatch.setenv("EASEL_ADAPTIVE_BATCH_SIZE", "off")
    monkeypatch.setenv("EASEL_DEADLINE_SECONDS", "0")
    monkeypatch.setenv("EASEL_PUBLIC_BASE_URL", "")  # empty: unset
    monkeypatch.setenv("EASEL_DATA_DIR", "~/easel-data")
    settings = load_settings({"port": "9001", "log_format": None, "log_prompts": True})
    assert settings.port == 9001  # a given value wins over the variable
    assert settings.adaptive_batch_size is False
    assert settings.deadline_seconds == 0
    assert settings.public_base_url is None
    assert settings.log_format == "json" and settings.log_prompts is True
    assert settings.data_dir == Path.home() / "easel-data"


def test_a_bad_given_value_is_named_by_its_source() -> None:
    with pytest.raises(SettingsError, match=r"^--url-ttl=0: expected an integer of at least 1$"):
        load_settings({"url_ttl_seconds": 0}, {"url_ttl_seconds": "--url-ttl"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"public_base_url": "example.com"}, "EASEL_PUBLIC_BASE_URL='example.com': expected an"),
        ({"url_secret": "hunter2"}, "EASEL_URL_SECRET: String should have at least 32"),
        ({"max_body_bytes": "100"}, "EASEL_MAX_BODY_BYTES='100': expected an integer of at least"),
        (
            {"header_timeout_seconds": "0"},
            "EASEL_HEADER_TIMEOUT_SECONDS='0': expected a number above 0",
        ),
    ],
)
def test_bad_values_are_refused_and_secrets_not_shown(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"EASEL_{name.upper()}", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(message)
    assert "hunter2" not in str(refused.value)


def test_settings_are_read_only() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1


def test_serve_help_comes_from_the_settings() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    help_text = " ".join(result.stdout.split())
    queue = Settings.model_fields["queue_images"]
    assert f"{queue.description} (env EASEL_QUEUE_IMAGES, default 64)" in help_text
    assert "(env EASEL_DEADLINE_SECONDS, default 600)" in help_text


def test_readme_configuration_table_is_current() -> None:
    readme = README.read_text(encoding="utf-8")
    assert with_current_table(readme) == readme, (
        "README's configuration table differs from Settings: run "
        "`python -m easel.devtools.settings_table --write README.md`"
    )


def test_the_cli_starts_without_pytorch_or_diffusers() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, easel.cli; print('torch' in sys.modules, 'diffusers' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert loaded.split() == ["False", "False"]
