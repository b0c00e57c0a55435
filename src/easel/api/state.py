"""What the routes share, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from easel.catalog import Catalog
from easel.db.database import Database
from easel.engine.matting import Matting
from easel.engine.types import ImageEngine
from easel.keys.store import KeyStore
from easel.limits.limiter import Limiter
from easel.prompts.rewriter import PromptRewriter
from easel.settings import Settings
from easel.storage.images import ImageStore
from easel.usage.store import UsageStore
from easel.usage.writer import UsageWriter


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
    # None when the operator switched transparent backgrounds off.
    matting: Matting | None
    # None: prompts go to the pipeline as written (`--prompt-rewriter off`).
    prompt_rewriter: PromptRewriter | None = None


def services(request: Request) -> AppServices:
    app_services: AppServices = request.app.state.services
    return app_services
