"""Model weights on disk: what the Hugging Face cache holds for a model, fetching only the files its
pipeline needs, and freeing the space again. Everything goes through huggingface_hub's own API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import (
    CachedRepoInfo,
    DeleteCacheStrategy,
    HfApi,
    HFCacheInfo,
    hf_hub_download,
    scan_cache_dir,
    snapshot_download,
)
from huggingface_hub.errors import (
    CacheNotFound,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from easel.engine.loader import looks_like_path

PIPELINE_INDEX = "model_index.json"

# The weight files diffusers and transformers load by name, optionally sharded, and their indexes.
_WEIGHT_FILE = re.compile(
    r"^(diffusion_pytorch_model|model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)$"
)
_WEIGHT_INDEX = re.compile(
    r"^(diffusion_pytorch_model|model|pytorch_model)\.(safetensors|bin)\.index\.json$"
)
# Other serialisations of the same weights (and fp16/ema variants) that a PyTorch load never reads.
_OTHER_WEIGHTS = re.compile(
    r"\.(safetensors|bin|ckpt|pt|pth|msgpack|h5|onnx|onnx_data|pb|gguf|xml)$"
)


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


def needed_files(model_index: dict[str, object], filenames: Iterable[str]) -> list[str]:
    """The files a PyTorch pipeline load reads from a hub repository, and no other copy of them.

    Only the component folders named in model_index.json are fetched (repositories often also hold
    single-file checkpoints at the top level), each weight in one format: safetensors when every
    component has it, else the pickled .bin files, never fp16/ema variants, ONNX, Flax or OpenVINO.
    """
    components = {name for name, value in model_index.items() if _is_component(value)}
    by_folder: dict[str, list[str]] = {}
    for filename in filenames:
        folder, _, name = filename.rpartition("/")
        if folder in components:
            by_folder.setdefault(folder, []).append(name)
    weighted = [names for names in by_folder.values() if any(_WEIGHT_FILE.match(n) for n in names)]
    use_safetensors = all(
        any(_WEIGHT_FILE.match(n) and n.endswith(".safetensors") for n in names)
        for names in weighted
    )
    kind = ".safetensors" if use_safetensors else ".bin"
    chosen = [PIPELINE_INDEX]
    for folder, names in sorted(by_folder.items()):
        for name in sorted(names):
            is_weight = bool(_WEIGHT_FILE.match(name) or _WEIGHT_INDEX.match(name))
            if (is_weight and kind in name) or (not is_weight and not _OTHER_WEIGHTS.search(name)):
                chosen.append(f"{folder}/{name}")
    return chosen


def _is_component(value: object) -> bool:
    # Components are ["library", "ClassName"]; optional ones left out are [null, null].
    return isinstance(value, list) and len(value) == 2 and value[0] is not None


def pull(repo_id: str) -> Path:
    """Download what the pipeline needs into the hub cache, with huggingface_hub's progress bars.

    Files already complete are skipped and partly downloaded ones resume, so running it again
    after an interruption carries on where it stopped.
    """
    try:
        filenames = [sibling.rfilename for sibling in HfApi().model_info(repo_id).siblings or ()]
        index_path = hf_hub_download(repo_id, PIPELINE_INDEX)
        model_index = json.loads(Path(index_path).read_text(encoding="utf-8"))
        files = needed_files(model_index, filenames)
        return Path(snapshot_download(repo_id, allow_patterns=files))
    except GatedRepoError as exc:
        raise WeightsError(
            f"{repo_id} is a gated model: accept its licence at https://huggingface.co/{repo_id} "
            "while logged in, then set HF_TOKEN to an access token of that account."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(
            f"{repo_id} was not found on the Hugging Face hub (or it is private: set HF_TOKEN)."
        ) from exc
    except EntryNotFoundError as exc:
        if isinstance(exc, FileNotFoundError):  # the local-cache flavour: we could not connect
            raise _offline(repo_id, exc) from exc
        raise WeightsError(
            f"{repo_id} has no {PIPELINE_INDEX}: it is not a diffusers pipeline repository."
        ) from exc
    except HfHubHTTPError as exc:
        raise WeightsError(
            f"the Hugging Face hub refused the download of {repo_id}: {exc}"
        ) from exc
    except Exception as exc:
        if _is_connection_problem(exc):
            raise _offline(repo_id, exc) from exc
        raise


def _is_connection_problem(exc: Exception) -> bool:
    # huggingface_hub has used requests, httpx and httpx2 over its versions; each names its
    # network failures ConnectionError or TransportError (offline mode is a ConnectionError too).
    return any(cls.__name__ in ("ConnectionError", "TransportError") for cls in type(exc).__mro__)


def _offline(repo_id: str, exc: Exception) -> WeightsError:
    if isinstance(exc, OfflineModeIsEnabled) or "offline" in str(exc).lower():
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
