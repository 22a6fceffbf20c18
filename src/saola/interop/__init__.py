"""Standard doors onto the kernel: NGSI-LD, SensorThings, Open311, OGC API Features, CAP, STIX, MQTT."""
