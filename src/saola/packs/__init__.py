"""Extension points: hook specifications, definitions packs return, and the plugin manager."""

import pluggy

hookimpl = pluggy.HookimplMarker("saola")
"""Decorator a pack puts on each hook it implements."""

__all__ = ["hookimpl"]
