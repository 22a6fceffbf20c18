"""Saola: an open-source Intelligent Operations Center (IOC) for Vietnamese provinces."""

__version__ = "0.1.0"
