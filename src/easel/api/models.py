"""GET /v1/models and /v1/models/{id}, listing the catalog in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from easel.api.auth import AuthorizedKey
from easel.api.state import services
from easel.catalog import ModelSpec
from easel.limits.limiter import require_model

router = APIRouter()


def model_object(spec: ModelSpec, created: int) -> dict[str, Any]:
    return {"id": spec.name, "object": "model", "created": created, "owned_by": spec.owned_by}


@router.get("/v1/models")
async def list_models(request: Request, key: AuthorizedKey) -> dict[str, Any]:
    app_services = services(request)
    created = request.app.state.started_at
    allowed = [spec for spec in app_services.catalog if key.policy.allows_model(spec.name)]
    return {"object": "list", "data": [model_object(s, created) for s in allowed]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request, key: AuthorizedKey) -> dict[str, Any]:
    spec = services(request).catalog.get(model_id)
    require_model(key, spec.name)
    return model_object(spec, request.app.state.started_at)
