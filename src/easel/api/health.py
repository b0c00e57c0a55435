"""/healthz (the process answers), /readyz (models loaded, database reachable) and /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from easel.api.state import services
from easel.engine.types import EngineMemory, ModelState

router = APIRouter()

# How soon a load balancer should ask again while the server is not ready.
READY_RETRY_SECONDS = 5
SERVABLE = (ModelState.READY, ModelState.UNLOADED)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    app_services = services(request)
    states = app_services.engine.states()
    database_ok = await asyncio.to_thread(app_services.database.ping)
    # A model unloaded to stay within the memory budget is served: its next request loads it.
    ready = database_ok and all(state in SERVABLE for state in states.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "models": {name: state.value for name, state in states.items()},
        "database": "ok" if database_ok else "unreachable",
    }
    memory = app_services.engine.memory()
    if memory is not None:
        body["memory"] = memory_details(memory)
    if ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(READY_RETRY_SECONDS)})


def memory_details(memory: EngineMemory) -> dict[str, Any]:
    """The memory budget as /readyz shows it (and `easel models list --server` reads it)."""
    budget = memory.budget
    return {
        "device": memory.device,
        "budget_bytes": budget.total_bytes,
        "used_bytes": budget.used_bytes,
        "peak_bytes": budget.peak_bytes,
        "waiting": budget.waiting,
        "evictions": budget.evictions,
        "resident": [
            {
                "name": resident.name,
                "models": list(memory.models.get(resident.name, ())),
                "bytes": resident.bytes,
                "last_used": datetime.fromtimestamp(resident.last_used, UTC).isoformat(),
                "in_use": resident.in_use,
                "offloaded": resident.name in memory.offloaded,
            }
            for resident in budget.residents
        ],
    }


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    payload = await asyncio.to_thread(generate_latest, REGISTRY)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
