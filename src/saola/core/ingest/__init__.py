"""The native ingestion doors (REST batches) and the dead letters of every door."""
