"""Alembic branch 'citizen_reports': the citizen reports pack's tables."""
