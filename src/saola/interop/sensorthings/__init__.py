"""OGC SensorThings API 1.1 under /sta/v1.1, mapped onto kernel entities, indicators and observations."""
