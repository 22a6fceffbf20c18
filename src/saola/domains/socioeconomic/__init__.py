"""Socio-economic pack (kinh tế - xã hội): monthly indicators against the province's plan targets."""
