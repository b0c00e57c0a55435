"""The admin API under /admin/: keys and usage, guarded by the admin key (EASEL_ADMIN_KEY)."""

from fastapi import APIRouter

from easel.api.admin import keys, usage

# Operators' routes: not in the published schema of the API clients use.
router = APIRouter(prefix="/admin", include_in_schema=False)
router.include_router(keys.router)
router.include_router(usage.router)
