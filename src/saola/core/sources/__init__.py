"""Source systems: named producers of data with API keys, a scope and what they may write."""
