"""Server settings: one documented list, read from EASEL_* environment variables and flags.

Each setting is one `Field` with its default, bounds and description; the CLI's help and the
README's configuration table are made from these fields.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin
from urllib.parse import urlsplit

import platformdirs
from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator, ByteSize, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from easel.engine.types import SchedulerConfig

ENV_PREFIX = "EASEL_"
MIN_SECRET_LENGTH = 32
# An admin key is a password for every key and quota: long and not a repeated pattern.
MIN_ADMIN_KEY_DISTINCT_CHARACTERS = 12


def default_data_dir() -> Path:
    """The per-user data directory, e.g. ~/.local/share/easel."""
    return Path(platformdirs.user_data_dir("easel", appauthor=False))


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an absolute http:// or https:// URL, e.g. https://easel.example")
    return value


class Settings(BaseSettings):
    """Everything a server instance is configured with. Built once in the CLI, never at import."""

    # Empty variables count as unset, as a shell's `EASEL_X= easel serve` means.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, validate_default=True
    )

    data_dir: Annotated[Path, AfterValidator(Path.expanduser)] = Field(
        default_factory=default_data_dir,
        description="Where images, keys and the database live. Unset: the per-user data "
        "directory (~/.local/share/easel on Linux).",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")
    public_base_url: Annotated[str, AfterValidator(_http_url)] | None = Field(
        default=None,
        description="Absolute URL clients reach the server by, for image URLs. Unset: taken "
        "from each request and its X-Forwarded-* headers.",
    )
    url_ttl_seconds: int = Field(
        default=3600, ge=1, description="Seconds an image URL stays valid."
    )
    sweep_interval_seconds: int = Field(
        default=60,
        ge=1,
        description="Seconds between sweeps that delete expired images and free the quota "
        "reservations of processes that died.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted, in bytes."
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest edit or variation request body accepted (multipart uploads, JSON "
        "with data URLs), in bytes.",
    )
    fetch_image_urls: bool = Field(
        default=False,
        description="Let JSON edits name http(s) image URLs for the server to fetch (never from "
        "loopback, private, link-local or reserved addresses). Off: data URLs only.",
    )
    fetch_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an image URL may take to fetch, redirects included.",
    )
    database_url: str | None = Field(
        default=None,
        repr=False,  # it may hold a password
        description="SQLAlchemy URL of the database, e.g. postgresql://user:pass@host/easel. "
        "Unset: SQLite at DATA_DIR/easel.db.",
    )
    url_secret: str | None = Field(
        default=None,
        repr=False,
        min_length=MIN_SECRET_LENGTH,
        description=f"Secret that signs image URLs, at least {MIN_SECRET_LENGTH} characters; "
        "the same on every server that shares the images. Unset: a random secret kept in "
        "DATA_DIR/url-signing.key.",
    )
    admin_key: str | None = Field(
        default=None,
        repr=False,
        description=f"Bearer key of the admin API: at least {MIN_SECRET_LENGTH} characters, "
        f"{MIN_ADMIN_KEY_DISTINCT_CHARACTERS} of them distinct, not the URL secret. Unset: "
        "the admin API is off.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line; text: one readable line per record.",
    )
    log_prompts: bool = Field(
        default=False,
        description="Put prompts in the log. Off: the log carries each prompt's length.",
    )
    # A reservation outlives its request only when the process died; then it frees after this long.
    reservation_ttl_seconds: int = Field(
        default=900,
        ge=10,
        description="Seconds after which the quota reservation of a process that died "
        "mid-request is freed.",
    )
    storage: str | None = Field(
        default=None,
        description="Where images are kept: s3://BUCKET/PREFIX (an S3-compatible store, endpoint "
        "and credentials from the usual AWS_* settings) or a directory. Unset: DATA_DIR/images.",
    )
    queue_images: int = Field(
        default=64,
        ge=1,
        description=(
            "Images that may wait per pipeline (shared by the models that use it); "
            "requests beyond get 429."
        ),
    )
    batch_images: int = Field(default=8, ge=1, description="Most images in one pipeline call.")
    batch_pixels: int = Field(
        default=8 * 1024 * 1024, ge=1, description="Most generated pixels in one pipeline call."
    )
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="Longest wait, in milliseconds, for compatible requests to share a pipeline "
        "call when the model is idle.",
    )
    adaptive_batch_size: bool = Field(
        default=True,
        description="Limit batches to the size measured fastest within the budgets. Off: "
        "always fill them.",
    )
    deadline_seconds: float = Field(
        default=600.0,
        ge=0,
        description="Seconds a request may take before it is cancelled with 504; 0: no deadline.",
    )
    memory_budget: ByteSize | None = Field(
        default=None,
        gt=0,
        description="Device memory the loaded models may hold together (RAM on a CPU), e.g. "
        "40GB, 300MB, 1.5GiB or bytes; to load another, the least recently used idle one is "
        "released. Unset: the device's memory less a fifth (at least 2 GiB, at most half).",
    )

    max_connections: int = Field(
        default=512,
        ge=1,
        description="Open HTTP connections; beyond, the one idle longest is closed, or the "
        "newcomer gets 503.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line and headers, in bytes; larger heads get 431.",
    )
    header_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a connection may take to send a request's head (from its start, or "
        "after a pause between requests); later, 408 or the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Seconds a request may take to send its body; later, 408."
    )
    # `off` is stored as empty: where an empty variable counts as unset, a word switches it off.
    matting_model: Annotated[str, AfterValidator(lambda value: "" if value == "off" else value)] = (
        Field(
            default="onnx-community/BiRefNet-ONNX",
            description="The background-matting model that makes `background: transparent` "
            "images: a hub id or a directory in the layout of onnx-community's BiRefNet ONNX "
            "exports; `off` switches transparent backgrounds off (400).",
        )
    )
    prompt_rewriter: str = Field(
        default="Qwen/Qwen3-1.7B",
        description="What rewrites prompts (translation for English-only text encoders, "
        "dall-e-3's expansion): an http(s)://HOST/v1 URL of an OpenAI-compatible "
        "chat-completions server, a hub id or directory of a small instruct model run in this "
        "process, or off.",
    )
    prompt_rewriter_model: str | None = Field(
        default=None,
        description="The model name to ask a chat-server prompt rewriter for; needed with an "
        "http(s) EASEL_PROMPT_REWRITER.",
    )
    prompt_rewrite_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a prompt rewrite may take; later, or on failure, the prompt goes "
        "on as written.",
    )
    api_docs: bool = Field(
        default=False,
        description="Serve /docs and /openapi.json (the public API only; admin routes are never "
        "listed).",
    )

    @model_validator(mode="after")
    def _rewriter_has_model(self) -> Self:
        if self.prompt_rewriter.startswith(("http://", "https://")) and not (
            self.prompt_rewriter_model
        ):
            raise ValueError(
                "EASEL_PROMPT_REWRITER_MODEL must name the chat server's model when "
                "EASEL_PROMPT_REWRITER is an http(s) URL"
            )
        return self

    @model_validator(mode="after")
    def _admin_key_is_safe(self) -> Self:
        if self.admin_key is not None:
            validate_admin_key(self.admin_key, self.url_secret)
        return self

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'easel.db'}"

    def scheduler_config(self) -> SchedulerConfig:
        """Each model's queue and batch limits and the memory budget, as the engine takes them."""
        return SchedulerConfig(
            queue_images=self.queue_images,
            batch_images=self.batch_images,
            batch_pixels=self.batch_pixels,
            batch_wait_seconds=self.batch_wait_ms / 1000,
            adaptive_batch_size=self.adaptive_batch_size,
            deadline_seconds=self.deadline_seconds or None,
            memory_budget_bytes=self.memory_budget,
        )

    def signing_secret(self) -> bytes:
        """EASEL_URL_SECRET, else a random secret kept in the data directory across restarts."""
        if self.url_secret:
            return self.url_secret.encode()
        path = self.data_dir / "url-signing.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first; use theirs
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


def validate_admin_key(admin_key: str, url_secret: str | None = None) -> None:
    """Refuse an admin key that could be guessed or is shared with another secret."""
    if len(admin_key) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"EASEL_ADMIN_KEY must be at least {MIN_SECRET_LENGTH} characters (try "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if len(set(admin_key)) < MIN_ADMIN_KEY_DISTINCT_CHARACTERS:
        raise ValueError("EASEL_ADMIN_KEY is too repetitive to be a secret: use a random one")
    if admin_key == url_secret:
        raise ValueError("EASEL_ADMIN_KEY must differ from EASEL_URL_SECRET")


class SettingsError(ValueError):
    """Settings that cannot be used, in one line naming each bad value and where it came from."""


def env_var(name: str) -> str:
    """The environment variable of the setting `name`."""
    return ENV_PREFIX + name.upper()


def load_settings(
    given: Mapping[str, Any] | None = None, sources: Mapping[str, str] | None = None
) -> Settings:
    """Settings from the EASEL_* environment with `given` values (None: not given) on top.

    Raises SettingsError naming each bad value's source: `sources[name]` (e.g. its flag) for a
    given value, else its environment variable.
    """
    values = {name: value for name, value in (given or {}).items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        names = {name: (sources or {}).get(name, name) for name in values}
        raise SettingsError("; ".join(_problems(exc, names))) from None


def _problems(exc: ValidationError, given_as: Mapping[str, str]) -> list[str]:
    problems = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across settings: its message names them
            problems.append(_message(error))
            continue
        name = str(error["loc"][0])
        field = Settings.model_fields[name]
        source = given_as.get(name, env_var(name))
        shown = f"{source}={error['input']!r}" if field.repr else source
        accepted = _accepted_values(field)
        problems.append(f"{shown}: {f'expected {accepted}' if accepted else _message(error)}")
    return problems


def _message(error: ErrorDetails) -> str:
    # A validator's own ValueError is the clearest wording; pydantic prefixes it with "Value error".
    cause = error.get("ctx", {}).get("error")
    return str(cause) if cause is not None else error["msg"]


def _accepted_values(field: FieldInfo) -> str | None:
    """What a setting of a plain type accepts, in words (`an integer from 1 to 65535`); None for
    text, whose rules say in their own messages what they want."""
    annotation = field.annotation
    if annotation == ByteSize | None:
        return "a size such as 40GB, 300MB or 1.5GiB, or a number of bytes above 0"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    if annotation is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    if annotation is int:
        kind = "an integer"
    elif annotation is float:
        kind = "a number"
    else:
        return None
    low = next((bound.ge for bound in field.metadata if isinstance(bound, Ge)), None)
    above = next((bound.gt for bound in field.metadata if isinstance(bound, Gt)), None)
    high = next((bound.le for bound in field.metadata if isinstance(bound, Le)), None)
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if above is not None:
        return f"{kind} above {above}"
    return f"{kind} of at least {low}" if low is not None else kind
