"""Users, roles, scopes, password hashing and bearer tokens."""
