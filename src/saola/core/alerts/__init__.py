"""Alerts and their lifecycle (firing -> acknowledged -> resolved), notifications and public CAP warnings."""
