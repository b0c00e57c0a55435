"""What the routes share, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from easel.catalog import Catalog
from easel.engine.worker import Engine
from easel.limits.limiter import Limiter
from easel.settings import Settings
from easel.storage.api_keys import KeyStore
from easel.storage.database import Database
from easel.storage.images import ImageStore
from easel.storage.usage import UsageStore
from easel.storage.usage_writer import UsageWriter


@dataclass
class AppServices:
    settings: Settings
    catalog: Catalog
    engine: Engine
    database: Database
    keys: KeyStore
    images: ImageStore
    limiter: Limiter
    usage: UsageStore
    usage_writer: UsageWriter


def services(request: Request) -> AppServices:
    return request.app.state.services  # type: ignore[no-any-return]
