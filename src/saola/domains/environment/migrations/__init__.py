"""Alembic branch 'environment': the environment pack's tables."""
