"""Routes of observations (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["observations"])
