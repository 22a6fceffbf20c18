"""Routes of entities (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["entities"])
