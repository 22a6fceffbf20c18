"""The web UI: wallboard, operator console, citizen portal and admin, served from the package (no CDN)."""
