"""Prometheus metrics the kernel keeps; packs may define their own beside them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("saola_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram("saola_http_request_seconds", "HTTP request duration", ["method", "route"])
OBSERVATIONS_INGESTED = Counter("saola_observations_ingested_total", "Observations accepted", ["outcome"])
EVENTS_INGESTED = Counter("saola_events_ingested_total", "Events accepted")
