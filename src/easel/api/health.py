"""/healthz (the process answers), /readyz (models loaded, database reachable) and /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from easel.api.state import services

router = APIRouter()

# How soon a load balancer should ask again while the server is not ready.
READY_RETRY_SECONDS = 5


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    app_services = services(request)
    models = {name: state.value for name, state in app_services.engine.states().items()}
    database_ok = await asyncio.to_thread(app_services.database.ping)
    ready = database_ok and all(state == "ready" for state in models.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "models": models,
        "database": "ok" if database_ok else "unreachable",
    }
    if ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(READY_RETRY_SECONDS)})


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    payload = await asyncio.to_thread(generate_latest, REGISTRY)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
