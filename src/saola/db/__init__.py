"""Storage: engine, declarative base, portable column types, outbox and migrations."""
