"""Kernel concept: indicators."""
