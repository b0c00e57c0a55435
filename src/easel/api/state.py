"""What the routes share, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from fastapi import Request

from easel.catalog import Catalog, GenerationPlan
from easel.db.database import Database
from easel.engine.generate import GeneratedImage
from easel.engine.timing import GenerationTiming
from easel.engine.worker import ModelState
from easel.keys.store import KeyStore
from easel.limits.limiter import Limiter
from easel.settings import Settings
from easel.storage.images import ImageStore
from easel.usage.store import UsageStore
from easel.usage.writer import UsageWriter


class ImageEngine(Protocol):
    """What the web layer needs of an engine: `easel.engine.worker.Engine` in this process, or a
    proxy to engines elsewhere (the Ray Serve model deployments)."""

    device: torch.device

    def start(self) -> None: ...

    async def generate(
        self,
        plan: GenerationPlan,
        seed: int | None = None,
        timing: GenerationTiming | None = None,
    ) -> list[GeneratedImage]: ...

    def states(self) -> dict[str, ModelState]: ...

    def load_seconds(self) -> dict[str, float | None]: ...

    async def shutdown(self) -> None: ...


@dataclass
class AppServices:
    settings: Settings
    catalog: Catalog
    engine: ImageEngine
    database: Database
    keys: KeyStore
    images: ImageStore
    limiter: Limiter
    usage: UsageStore
    usage_writer: UsageWriter


def services(request: Request) -> AppServices:
    return request.app.state.services  # type: ignore[no-any-return]
