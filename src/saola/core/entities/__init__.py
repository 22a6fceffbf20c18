"""Kernel concept: entities."""
