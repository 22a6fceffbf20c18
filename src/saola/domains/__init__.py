"""Built-in domain packs. Each is loaded through the `saola.packs` entry points like a third-party pack."""
