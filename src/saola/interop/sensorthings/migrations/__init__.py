"""Alembic branch 'sensorthings': tables of this door."""
