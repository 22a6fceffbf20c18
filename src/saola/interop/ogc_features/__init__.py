"""OGC API – Features door: serves the feature collections packs offer through saola_feature_collections."""
