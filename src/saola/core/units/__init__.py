"""The administrative unit tree (nation -> provinces -> communes) and the agencies inside units."""
