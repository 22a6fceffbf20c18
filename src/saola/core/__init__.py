"""The kernel: generic concepts every domain pack builds on. It never imports a pack."""
