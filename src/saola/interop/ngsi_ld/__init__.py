"""ETSI NGSI-LD under /ngsi-ld/v1, the canonical context API, mapped onto kernel entities and observations."""
