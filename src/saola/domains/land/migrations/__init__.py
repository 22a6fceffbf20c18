"""Alembic branch 'land': the land pack's tables."""
