"""Publish/subscribe for accepted changes: in-process by default, a Redis Stream when several workers run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from saola.bus.memory import Bus, InProcessBus, Message, Replay, get_bus, parse_id, set_bus

if TYPE_CHECKING:
    from saola.config import Settings

__all__ = ["Bus", "InProcessBus", "Message", "Replay", "configure_bus", "get_bus", "parse_id", "set_bus"]


def make_bus(url: str | None) -> Bus:
    """A bus for a URL: None for the in-process bus, redis://host:port/db for the Redis Stream adapter."""
    if not url or url in ("memory", "memory://"):
        return InProcessBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from saola.bus.redis_stream import RedisBus

        return RedisBus(url)
    raise ValueError(f"unknown bus URL {url!r}: expected redis://host:port/db (or nothing for in-process)")


def configure_bus(settings: Settings) -> Bus:
    """Make the process-wide bus match SAOLA_BUS_URL (kept as it is when it already does)."""
    current = get_bus()
    url = settings.bus_url
    wanted_redis = bool(url) and url not in ("memory", "memory://")
    if wanted_redis and getattr(current, "url", None) == url:
        return current
    if not wanted_redis and isinstance(current, InProcessBus):
        return current
    bus = make_bus(url)
    set_bus(bus)
    current.close()
    return bus
