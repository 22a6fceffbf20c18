"""Routes of events (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["events"])
