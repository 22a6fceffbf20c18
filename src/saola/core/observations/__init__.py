"""Kernel concept: observations."""
