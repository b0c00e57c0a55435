"""GET /v1/models and /v1/models/{id}: the catalog in OpenAI's shape, plus what each model accepts.

OpenAI's four fields (id, object, created, owned_by) are unchanged, so every SDK parses the objects;
an extra `easel` object carries the model's accepted values, which the web playground reads.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from easel.api.auth import AuthorizedKey
from easel.api.images.protocol import RESPONSE_FORMATS
from easel.api.state import AppServices, services
from easel.catalog import ModelSpec
from easel.catalog.output import accepted_values
from easel.engine.types import MAX_SEED
from easel.limits.limiter import require_model

router = APIRouter()


def capabilities(spec: ModelSpec, app_services: AppServices) -> dict[str, Any]:
    """What each request field accepts for this model; a `null` default: the field is refused."""
    return {
        "sizes": list(spec.sizes),
        "default_size": spec.default_size,
        "qualities": list(spec.qualities),
        "default_quality": spec.default_quality,
        "styles": list(spec.styles),
        "default_style": spec.default_style if spec.styles else None,
        "max_n": spec.max_n,
        "max_prompt_chars": spec.max_prompt_chars,
        # Empty for the GPT image models, which refuse the field and always answer b64_json.
        "response_formats": [] if spec.is_gpt_image else list(RESPONSE_FORMATS),
        "family": spec.family,
        "output_formats": list(accepted_values(spec.family)["output_format"]),
        # Transparent only while the server has a background-matting model.
        "backgrounds": [
            background
            for background in accepted_values(spec.family)["background"]
            if background != "transparent" or app_services.matting is not None
        ],
        "streams": True in accepted_values(spec.family)["stream"],
        # Whether /v1/images/edits and /v1/images/variations take the model at all.
        "edits": spec.takes_edits,
        "variations": spec.makes_variations,
        "free_sizes": spec.has_free_sizes,
        "returns_revised_prompt": spec.returns_revised_prompt,
        "seed": {"min": 0, "max": MAX_SEED},
        "licence": spec.licence,
        "state": app_services.engine.states()[spec.name].value,
    }


def model_object(spec: ModelSpec, request: Request) -> dict[str, Any]:
    return {
        "id": spec.name,
        "object": "model",
        "created": request.app.state.started_at,
        "owned_by": spec.owned_by,
        "easel": capabilities(spec, services(request)),
    }


@router.get("/v1/models")
async def list_models(request: Request, key: AuthorizedKey) -> dict[str, Any]:
    allowed = [spec for spec in services(request).catalog if key.policy.allows_model(spec.name)]
    return {"object": "list", "data": [model_object(spec, request) for spec in allowed]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request, key: AuthorizedKey) -> dict[str, Any]:
    spec = services(request).catalog.get(model_id)
    require_model(key, spec.name)
    return model_object(spec, request)
