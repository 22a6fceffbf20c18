"""Tables of the ngsi_ld door (to be written)."""
