"""Kernel concept: events."""
