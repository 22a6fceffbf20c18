"""Publish/subscribe for accepted changes; the in-process bus is the default."""

from saola.bus.memory import InProcessBus, Message, get_bus, set_bus

__all__ = ["InProcessBus", "Message", "get_bus", "set_bus"]
