"""Tables of the sensorthings door (to be written)."""
