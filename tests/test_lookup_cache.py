"""The write paths' lookup cache (saola.core.cache): a change made through the kernel is seen at once by the worker
that made it and, by another worker, once the cache's lifetime has passed; never a stale answer past that."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from saola.app import create_app
from saola.config import Settings
from tests.conftest import unique

LIFETIME = 0.3  # seconds, for the second worker


def _register(client: TestClient, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    r = client.post("/api/sources", json={"name": unique("src"), "scope": "68", **over}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _reading(code: str, value: float = 1.0) -> dict[str, Any]:
    return {"items": [{"indicator": code, "unit": "68", "ts": datetime.now(UTC).isoformat(), "value": value}]}


def test_a_disabled_key_is_refused_at_once_by_the_worker_that_disabled_it(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "68")
    created = _register(client, integrator)
    key = {"X-API-Key": created["api_key"]}
    assert client.get("/api/auth/me", headers=key).status_code == 200  # now cached
    client.post(f"/api/sources/{created['id']}/disable", headers=integrator).raise_for_status()
    assert client.get("/api/auth/me", headers=key).status_code == 401
    client.post(f"/api/sources/{created['id']}/enable", headers=integrator).raise_for_status()
    assert client.get("/api/auth/me", headers=key).status_code == 200  # the refusal was not kept either
    rotated = client.post(f"/api/sources/{created['id']}/rotate-key", headers=integrator).json()
    assert client.get("/api/auth/me", headers=key).status_code == 401
    assert client.get("/api/auth/me", headers={"X-API-Key": rotated["api_key"]}).status_code == 200


def test_another_worker_sees_a_disabled_key_within_the_lifetime(client: TestClient, make_user,
                                                                  settings: Settings) -> None:
    integrator = make_user("integrator", "68")
    created = _register(client, integrator)
    key = {"X-API-Key": created["api_key"]}
    other = create_app(settings.model_copy(update={"lookup_cache_seconds": LIFETIME}))  # its own engine and cache
    with TestClient(other) as worker:
        assert worker.get("/api/auth/me", headers=key).status_code == 200
        client.post(f"/api/sources/{created['id']}/disable", headers=integrator).raise_for_status()
        assert client.get("/api/auth/me", headers=key).status_code == 401
        time.sleep(LIFETIME + 0.05)
        assert worker.get("/api/auth/me", headers=key).status_code == 401


def test_no_caching_when_the_lifetime_is_zero(client: TestClient, make_user, settings: Settings) -> None:
    integrator = make_user("integrator", "68")
    created = _register(client, integrator)
    key = {"X-API-Key": created["api_key"]}
    other = create_app(settings.model_copy(update={"lookup_cache_seconds": 0}))
    with TestClient(other) as worker:
        assert worker.get("/api/auth/me", headers=key).status_code == 200
        client.post(f"/api/sources/{created['id']}/disable", headers=integrator).raise_for_status()
        assert worker.get("/api/auth/me", headers=key).status_code == 401


def test_a_deactivated_or_narrowed_indicator_applies_to_the_next_batch(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "VN")
    code = f"test.{unique('c')}"
    client.post("/api/indicators", json={"code": code, "name_vi": "Mực nước", "unit": "cm", "domain": "water",
                                         "min_value": 0, "max_value": 1000}, headers=integrator).raise_for_status()
    key = {"X-API-Key": _register(client, integrator)["api_key"]}
    first = client.post("/api/ingest/observations", json=_reading(code, 500.0), headers=key)
    assert first.status_code == 200 and first.json()["flagged"] == 0, first.text  # indicator now cached
    client.patch(f"/api/indicators/{code}", json={"max_value": 100}, headers=integrator).raise_for_status()
    narrowed = client.post("/api/ingest/observations", json=_reading(code, 500.0), headers=key)
    assert narrowed.status_code == 200 and narrowed.json()["flagged"] == 1, narrowed.text
    client.patch(f"/api/indicators/{code}", json={"is_active": False}, headers=integrator).raise_for_status()
    refused = client.post("/api/ingest/observations", json=_reading(code), headers=key)
    assert refused.status_code == 422 and "inactive" in refused.text


def test_many_keys_are_read_at_once_and_expire_with_the_lifetime() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from saola.core.cache import MISSING, TTL_OPTION, LookupCache

    cache = LookupCache("test: many keys")
    engine = create_engine("sqlite://", execution_options={TTL_OPTION: LIFETIME})
    with Session(engine) as session:
        cache.put(session, "a", 1)
        cache.put(session, "b", None)  # a kept "nothing" is an answer too
        assert cache.get_many(session, ["a", "b", "c"]) == {"a": 1, "b": None}
        time.sleep(LIFETIME + 0.05)
        assert cache.get_many(session, ["a", "b"]) == {} and cache.get(session, "a") is MISSING
    engine.dispose()
