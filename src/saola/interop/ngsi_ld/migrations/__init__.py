"""Alembic branch 'ngsi_ld': tables of this door."""
