"""/admin/usage: usage totals by key, model and day, filtered, as JSON."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request

from easel.api.admin.auth import require_admin
from easel.api.state import services
from easel.errors import InvalidRequestError
from easel.usage.store import UsageFilter, totals

router = APIRouter(dependencies=[Depends(require_admin)])


def _day(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid '{name}': expected a date like 2026-11-24, got '{value}'.", param=name
        ) from None


@router.get("/usage")
async def usage(
    request: Request,
    key_id: str | None = None,
    model: str | None = None,
    user: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Records of this process are flushed first, so a request just answered is counted."""
    where = UsageFilter(key_id, model, user, _day("since", since), _day("until", until))
    app_services = services(request)
    await asyncio.to_thread(app_services.usage_writer.flush)
    rows = await asyncio.to_thread(app_services.usage.summary, where)
    return {
        "object": "list",
        "data": [row.as_dict() for row in rows],
        "totals": totals(rows),
    }
