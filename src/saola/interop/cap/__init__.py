"""OASIS CAP 1.2: published alerts as CAP messages and an Atom feed of them (a public door, no login)."""
