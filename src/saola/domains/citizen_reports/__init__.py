"""Citizen reports pack (phản ánh hiện trường): reports from citizens as kernel cases, and Open311 GeoReport v2."""
