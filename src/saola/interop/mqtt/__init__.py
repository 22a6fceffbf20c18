"""The MQTT door: Saola subscribes to a broker (saola/<source>/<observations|events>) and ingests what arrives."""
