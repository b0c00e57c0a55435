"""/admin/keys: create (the secret is returned once, here), list, read, change and revoke keys."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from easel.api.admin.auth import require_admin
from easel.api.body import read_json_object
from easel.api.state import services
from easel.errors import InvalidRequestError, NotFoundError
from easel.keys.store import ApiKey
from easel.limits.policy import KeyPolicy, PolicyError, check_key_name, parse_expiry

router = APIRouter(prefix="/keys", dependencies=[Depends(require_admin)])


class KeyFields(BaseModel):
    """The fields a key can be created or changed with; null clears a limit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = None
    rpm: int | None = None
    ipm: int | None = None
    user_rpm: int | None = None
    user_ipm: int | None = None
    quota: int | None = None
    quota_period: str | None = None
    models: list[str] | None = None
    expires_at: str | None = None
    disabled: bool | None = None


def _read_fields(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The new name (if given) and the policy changes, exactly the fields the body names."""
    try:
        given = KeyFields.model_validate(body).model_dump(exclude_unset=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = str(error["loc"][0]) if error["loc"] else None
        raise InvalidRequestError(f"Invalid '{param}': {error['msg']}.", param=param) from None
    name = given.pop("name", None)
    if "quota_period" in given and given["quota_period"] is None:
        given["quota_period"] = "total"
    if "disabled" in given and given["disabled"] is None:
        given["disabled"] = False
    if "models" in given and given["models"] is not None:
        given["models"] = tuple(dict.fromkeys(given["models"]))
    try:
        if name is not None:
            check_key_name(name)
        if given.get("expires_at") is not None:
            given["expires_at"] = parse_expiry(given["expires_at"])
        return name, given
    except PolicyError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from None


def _unknown_models(request: Request, changes: dict[str, Any]) -> None:
    catalog = services(request).catalog
    for model in changes.get("models") or ():
        catalog.get(model)


def _key_or_404(key: ApiKey | None, key_id: str) -> ApiKey:
    if key is None:
        raise NotFoundError(f"No API key with id '{key_id}'.", code="key_not_found")
    return key


@router.get("")
async def list_keys(request: Request) -> dict[str, Any]:
    keys = await asyncio.to_thread(services(request).keys.list)
    return {"object": "list", "data": [key.as_dict() for key in keys]}


@router.post("")
async def create_key(request: Request) -> JSONResponse:
    name, changes = _read_fields(await read_json_object(request, 64 * 1024))
    _unknown_models(request, changes)
    try:
        policy = KeyPolicy().changed(changes)
    except PolicyError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from None
    key, secret = await asyncio.to_thread(services(request).keys.create, name or "", policy)
    return JSONResponse({**key.as_dict(), "secret": secret}, status_code=201)


@router.get("/{key_id}")
async def get_key(key_id: str, request: Request) -> dict[str, Any]:
    key = await asyncio.to_thread(services(request).keys.get, key_id)
    return _key_or_404(key, key_id).as_dict()


@router.patch("/{key_id}")
async def update_key(key_id: str, request: Request) -> dict[str, Any]:
    name, changes = _read_fields(await read_json_object(request, 64 * 1024))
    _unknown_models(request, changes)
    try:
        key = await asyncio.to_thread(services(request).keys.update, key_id, changes, name)
    except PolicyError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from None
    return _key_or_404(key, key_id).as_dict()


@router.delete("/{key_id}")
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    key = await asyncio.to_thread(services(request).keys.revoke, key_id)
    return _key_or_404(key, key_id).as_dict()
