"""Routes of indicators (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["indicators"])
