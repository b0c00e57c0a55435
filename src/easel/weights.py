"""Model weights on disk: what the Hugging Face cache holds for a model, fetching the files its
pipeline loads (as `easel serve` does), and freeing the space again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CachedRepoInfo, DeleteCacheStrategy, HFCacheInfo, scan_cache_dir
from huggingface_hub.errors import (
    CacheNotFound,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from easel.engine.loader import download, looks_like_path

PIPELINE_INDEX = "model_index.json"

E = TypeVar("E", bound=BaseException)


class WeightsError(RuntimeError):
    """A pull or removal that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class LocalWeights:
    """What is on this machine for a model source."""

    path: Path
    size_bytes: int
    # A pipeline index is there; a hub pull that was interrupted may still lack weights.
    has_pipeline_index: bool


def is_hub_id(source: str) -> bool:
    return not looks_like_path(source)


def local_weights(source: str) -> LocalWeights | None:
    """The local directory or the newest cached snapshot of `source`, or None if nothing is here."""
    if not is_hub_id(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            return None
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return LocalWeights(path, size, (path / PIPELINE_INDEX).is_file())
    cached = _cached(source)
    if cached is None or not cached[1].revisions:
        return None
    repo = cached[1]
    newest = max(repo.revisions, key=lambda revision: revision.last_modified)
    return LocalWeights(
        newest.snapshot_path, repo.size_on_disk, (newest.snapshot_path / PIPELINE_INDEX).is_file()
    )


def pull(repo_id: str) -> Path:
    """Download the files `easel serve` loads for `repo_id` into the hub cache (its loader's own
    `download`), with huggingface_hub's progress bars.

    Files already complete are skipped and partly downloaded ones resume, so running it again
    after an interruption carries on where it stopped.
    """
    try:
        return download(repo_id)
    except Exception as exc:
        error = _pull_error(repo_id, exc)
        if error is None:
            raise
        raise error from exc


def _pull_error(repo_id: str, exc: BaseException) -> WeightsError | None:
    """What to tell the user about a failed pull, from the hub's error wherever it is in the
    chain (diffusers re-raises a failed metadata fetch as an OSError caused by it)."""
    causes = list(_chain(exc))
    if _first(causes, GatedRepoError):
        return WeightsError(
            f"{repo_id} is a gated model: accept its licence at https://huggingface.co/{repo_id} "
            "while logged in, then set HF_TOKEN to an access token of that account."
        )
    if _first(causes, RepositoryNotFoundError):
        return WeightsError(
            f"{repo_id} was not found on the Hugging Face hub (or it is private: set HF_TOKEN)."
        )
    offline = _first(causes, OfflineModeIsEnabled)
    if offline is not None:
        return _offline(repo_id, offline)
    connection = next((cause for cause in causes if _is_connection_problem(cause)), None)
    if connection is not None:
        return _offline(repo_id, connection)
    if _first(causes, EntryNotFoundError):
        return WeightsError(
            f"{repo_id} has no {PIPELINE_INDEX}: it is not a diffusers pipeline repository."
        )
    http = _first(causes, HfHubHTTPError)
    if http is not None:
        return WeightsError(f"the Hugging Face hub refused the download of {repo_id}: {http}")
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first(causes: list[BaseException], kind: type[E]) -> E | None:
    return next((cause for cause in causes if isinstance(cause, kind)), None)


def _is_connection_problem(exc: BaseException) -> bool:
    # huggingface_hub has used requests, httpx and httpx2 over its versions; each names its
    # network failures ConnectionError or TransportError.
    return any(cls.__name__ in ("ConnectionError", "TransportError") for cls in type(exc).__mro__)


def _offline(repo_id: str, exc: BaseException) -> WeightsError:
    if isinstance(exc, OfflineModeIsEnabled):
        reason = "HF_HUB_OFFLINE is set, so downloads are switched off. Unset it to download"
    else:
        reason = f"the Hugging Face hub cannot be reached ({type(exc).__name__}). Check the network"
    return WeightsError(
        f"Cannot download {repo_id}: {reason}, or copy the pipeline onto this machine and serve "
        "it with --model NAME=/path/to/pipeline."
    )


def removal(repo_id: str) -> DeleteCacheStrategy | None:
    """How deleting every cached revision of `repo_id` would go (see `expected_freed_size`)."""
    cached = _cached(repo_id)
    if cached is None:
        return None
    cache, repo = cached
    return cache.delete_revisions(*(revision.commit_hash for revision in repo.revisions))


def _cached(repo_id: str) -> tuple[HFCacheInfo, CachedRepoInfo] | None:
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return None
    repo = next((r for r in cache.repos if r.repo_type == "model" and r.repo_id == repo_id), None)
    return None if repo is None else (cache, repo)
