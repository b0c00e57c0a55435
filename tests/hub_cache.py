"""Writing a pipeline into a Hugging Face hub cache exactly as huggingface_hub lays one out:
content-addressed blobs, a snapshot folder of relative symlinks per commit, and a ref to it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def add_to_hub_cache(hub_cache: Path, repo_id: str, pipeline_dir: Path) -> Path:
    """Cache `pipeline_dir` as the `main` revision of model `repo_id`; returns the snapshot."""
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in pipeline_dir.rglob("*") if p.is_file()):
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(source, blob)
        link = snapshot / source.relative_to(pipeline_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
