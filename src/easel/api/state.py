"""What the routes share, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from easel.catalog import Catalog, GenerationPlan
from easel.engine.generate import GeneratedImage
from easel.settings import Settings
from easel.storage.api_keys import KeyStore
from easel.storage.database import Database
from easel.storage.images import ImageStore


class ImageEngine(Protocol):
    """What the web layer needs of an engine: `easel.engine.worker.Engine` in this process, or a
    proxy to engines elsewhere (the Ray Serve model deployments)."""

    def start(self) -> None: ...

    async def generate(
        self, plan: GenerationPlan, seed: int | None = None
    ) -> list[GeneratedImage]: ...

    def shutdown(self) -> None: ...


@dataclass
class AppServices:
    settings: Settings
    catalog: Catalog
    engine: ImageEngine
    database: Database
    keys: KeyStore
    images: ImageStore


def services(request: Request) -> AppServices:
    return request.app.state.services  # type: ignore[no-any-return]
