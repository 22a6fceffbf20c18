"""Health, metrics, limits on request bodies, and the OpenAPI document."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from saola import __version__
from saola.core.auth.context import system_actor
from saola.core.errors import ValidationFailed
from saola.db.migrate import head_revisions
from saola.runtime import LARGE_BATCH_YOUNG_THRESHOLD, large_allocations


def test_health_reports_version_database_and_revision(client: TestClient, backend: str) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["database"] == backend
    assert body["migration_revision"] and set(body["migration_revision"].split(",")) <= head_revisions()
    assert body["migrations_current"] is True
    assert "core" in body["packs"]


def test_a_started_server_keeps_its_startup_objects_out_of_the_collector(client: TestClient) -> None:
    assert gc.get_freeze_count() > 10_000  # the application, its metadata and schemas


def test_large_batches_collect_young_objects_rarely_until_the_last_one_ends() -> None:
    # A 10,000-reading batch must not pay for a dozen collections walking its own live rows; small requests keep
    # CPython's threshold (and its short pauses) once no large batch is in flight.
    usual = gc.get_threshold()
    with large_allocations():
        assert gc.get_threshold()[0] == LARGE_BATCH_YOUNG_THRESHOLD > usual[0]
        with large_allocations():  # a second batch in another thread
            pass
        assert gc.get_threshold()[0] == LARGE_BATCH_YOUNG_THRESHOLD  # the first is still in flight
    assert gc.get_threshold() == usual
    with pytest.raises(RuntimeError), large_allocations():
        raise RuntimeError("a batch that fails")
    assert gc.get_threshold() == usual


def test_ingesting_a_large_batch_uses_the_large_batch_setting(session_factory, monkeypatch) -> None:
    from saola.core.observations import service

    seen: list[int] = []
    real = service._ingest
    monkeypatch.setattr(service, "_ingest", lambda *a, **k: (seen.append(gc.get_threshold()[0]), real(*a, **k))[1])
    with session_factory() as session:
        for n in (service.LARGE_BATCH - 1, service.LARGE_BATCH):
            with pytest.raises(ValidationFailed):  # refused after the setting was chosen: nothing to write
                service.ingest(session, actor=system_actor("test"), items=[{"bad": i} for i in range(n)])
    assert seen == [gc.get_threshold()[0], LARGE_BATCH_YOUNG_THRESHOLD]


def test_metrics_count_requests(client: TestClient) -> None:
    client.get("/api/health")
    text = client.get("/metrics").text
    assert "saola_http_requests_total" in text
    line = next(ln for ln in text.splitlines()
                if ln.startswith("saola_http_requests_total") and 'route="/api/health"' in ln and 'status="200"' in ln)
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "saola_observations_ingested_total" in text


def test_oversized_body_gets_413(client: TestClient, admin_headers, app) -> None:
    limit = app.state.settings.max_body_bytes
    r = client.post("/api/agencies", content=b"x" * (limit + 1),
                    headers={**admin_headers, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "exceeds" in r.json()["detail"]


def test_malformed_json_names_the_problem(client: TestClient, admin_headers) -> None:
    r = client.post("/api/agencies", content=b'{"unit_code": "68", ', headers={**admin_headers,
                                                                             "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["type"] == "json_invalid"


def test_unknown_field_is_refused_with_its_path(client: TestClient, admin_headers) -> None:
    r = client.post("/api/agencies", json={"unit_code": "68", "code": "x", "name": "X", "colour": "red"},
                    headers=admin_headers)
    assert r.status_code == 422
    assert ["body", "colour"] in [e["loc"] for e in r.json()["errors"]]


def test_every_route_is_typed_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    untyped = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if not op.get("summary"):
                untyped.append(f"{method.upper()} {path} has no summary")
            responses = op.get("responses", {})
            if "204" in responses or path == "/metrics":  # no JSON body to describe
                continue
            ok = responses.get("200") or responses.get("201") or responses.get("202")
            content = (ok or {}).get("content", {})
            schema = next(iter(content.values()), {}).get("schema") if content else None
            if not schema:
                untyped.append(f"{method.upper()} {path}")
    assert untyped == []
