"""The admin API under /admin/: keys and usage, guarded by the admin key (EASEL_ADMIN_KEY)."""

from fastapi import APIRouter

from easel.api.admin import keys, usage

router = APIRouter(prefix="/admin")
router.include_router(keys.router)
router.include_router(usage.router)
