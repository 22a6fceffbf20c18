"""Source systems: registration inside scope, API keys (hashed, rotated, disabled) and what a key may do."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.core.audit.models import AuditEntry
from saola.core.sources.models import Source
from tests.conftest import unique

DALAT_WARD = "24781"


def register(client: TestClient, headers: dict[str, str], scope: str = "68", **over: Any) -> Any:
    return client.post("/api/sources", json={"name": unique("src"), "scope": scope, **over}, headers=headers)


def key_headers(created: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": created["api_key"]}


def test_integrator_registers_a_source_in_scope(client: TestClient, make_user, session_factory) -> None:
    integrator = make_user("integrator", "68")
    r = register(client, integrator, allowed_writes=["observations:env.*"], description="Mạng quan trắc không khí")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["api_key"].startswith(f"sk_{created['key_prefix']}_") and created["scope_code"] == "68"
    me = client.get("/api/auth/me", headers=key_headers(created)).json()
    assert me["kind"] == "source" and me["name"] == created["name"] and me["scope_code"] == "68"
    shown = client.get(f"/api/sources/{created['id']}", headers=integrator).json()
    assert "api_key" not in shown and shown["allowed_writes"] == ["observations:env.*"]
    with session_factory() as session:
        row = session.get(Source, created["id"])
        assert row is not None
        stored = " ".join(str(v) for v in (row.key_prefix, row.key_hash, row.description, row.name))
    assert created["api_key"].split("_", 2)[2] not in stored  # only a hash of the secret is kept
    assert register(client, integrator, scope=DALAT_WARD).status_code == 201


def test_integrator_cannot_register_outside_scope(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "68")
    for scope in ["79", "VN", "26506"]:
        assert register(client, integrator, scope=scope).status_code == 403, scope
    commune_integrator = make_user("integrator", DALAT_WARD)
    assert register(client, commune_integrator, scope="68").status_code == 403
    assert register(client, commune_integrator, scope=DALAT_WARD).status_code == 201


@pytest.mark.parametrize("role", ["viewer", "leader", "operator", "agency_staff"])
def test_other_roles_cannot_register(client: TestClient, make_user, role: str) -> None:
    assert register(client, make_user(role, "68")).status_code == 403


def test_source_input_is_checked(client: TestClient, admin_headers) -> None:
    r = register(client, admin_headers, scope="99999")
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "scope"]
    r = register(client, admin_headers, allowed_writes=["everything"])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "allowed_writes", 0]
    r = register(client, admin_headers, allowed_writes=["users:*"])
    assert r.status_code == 422
    name = unique("src")
    assert register(client, admin_headers, name=name).status_code == 201
    assert register(client, admin_headers, name=name).status_code == 409
    assert register(client, admin_headers, name="Has Spaces").status_code == 422


def test_listing_and_managing_stay_inside_scope(client: TestClient, make_user, admin_headers) -> None:
    elsewhere = register(client, admin_headers, scope="79").json()
    integrator = make_user("integrator", "68")
    mine = register(client, integrator).json()
    communes = {u["code"] for u in client.get("/api/units/68/children", headers=integrator).json()}
    listing = client.get("/api/sources", params={"limit": 1000}, headers=integrator).json()
    assert {s["scope_code"] for s in listing} <= communes | {"68"}
    assert mine["id"] in {s["id"] for s in listing} and elsewhere["id"] not in {s["id"] for s in listing}
    for path in ["", "/rotate-key", "/disable", "/enable"]:
        method = client.get if path == "" else client.post
        assert method(f"/api/sources/{elsewhere['id']}{path}", headers=integrator).status_code == 404, path
    assert client.get(f"/api/sources/{elsewhere['id']}", headers=key_headers(elsewhere)).status_code == 403
    # the other province's key still works: nothing was rotated or disabled by the failed attempts
    assert client.get("/api/auth/me", headers=key_headers(elsewhere)).status_code == 200
    operator = make_user("operator", "68")  # sources:read only
    assert client.get(f"/api/sources/{mine['id']}", headers=operator).status_code == 200
    assert client.post(f"/api/sources/{mine['id']}/rotate-key", headers=operator).status_code == 403
    assert client.post(f"/api/sources/{mine['id']}/disable", headers=operator).status_code == 403


# --- API keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "nonsense",
        "sk_000000000000_wrongwrongwrongwrongwrong",
        "sk_zzzzzzzzzzzz_wrongwrongwrongwrongwrong",
        "sk__",
        "Bearer sk_000000000000_wrongwrongwrongwrongwrong",
    ],
)
def test_malformed_or_unknown_keys_are_401(client: TestClient, key: str) -> None:
    assert client.get("/api/units/68", headers={"X-API-Key": key}).status_code == 401


def test_right_prefix_wrong_secret_is_401(client: TestClient, admin_headers) -> None:
    created = register(client, admin_headers).json()
    forged = f"sk_{created['key_prefix']}_{'A' * 43}"
    assert client.get("/api/auth/me", headers={"X-API-Key": forged}).status_code == 401
    truncated = created["api_key"][:-1]
    assert client.get("/api/auth/me", headers={"X-API-Key": truncated}).status_code == 401


def test_disabled_source_is_401_until_enabled(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "68")
    created = register(client, integrator).json()
    assert client.post(f"/api/sources/{created['id']}/disable", headers=integrator).json()["is_active"] is False
    assert client.get("/api/auth/me", headers=key_headers(created)).status_code == 401
    assert client.post(f"/api/sources/{created['id']}/enable", headers=integrator).json()["is_active"] is True
    assert client.get("/api/auth/me", headers=key_headers(created)).status_code == 200


def test_rotated_key_replaces_the_old_one(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "68")
    created = register(client, integrator).json()
    rotated = client.post(f"/api/sources/{created['id']}/rotate-key", headers=integrator)
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["api_key"] != created["api_key"] and new["id"] == created["id"]
    assert client.get("/api/auth/me", headers=key_headers(created)).status_code == 401
    assert client.get("/api/auth/me", headers=key_headers(new)).status_code == 200


def test_a_source_cannot_act_as_a_user(client: TestClient, make_source) -> None:
    key = make_source("VN")
    body = {"username": unique("nu"), "password": "long-enough-pw", "role": "admin", "scope": "VN"}
    assert client.post("/api/users", json=body, headers=key).status_code == 403
    assert client.get("/api/users", headers=key).status_code == 403
    assert client.post("/api/sources", json={"name": unique("src"), "scope": "VN"}, headers=key).status_code == 403
    assert client.get("/api/sources", headers=key).status_code == 403
    assert client.get("/api/audit", headers=key).status_code == 403
    agency = {"unit_code": "68", "code": unique("ag"), "name": "Sở"}
    assert client.post("/api/agencies", json=agency, headers=key).status_code == 403


def test_a_source_sees_only_its_scope(client: TestClient, make_source) -> None:
    key = make_source(DALAT_WARD)
    assert client.get(f"/api/units/{DALAT_WARD}", headers=key).status_code == 200
    assert client.get("/api/units/68", headers=key).status_code == 404
    assert client.get("/api/units/79", headers=key).status_code == 404


def test_a_token_and_a_key_together_act_as_the_user(client: TestClient, make_user, make_source) -> None:
    """A bearer token wins over a key, so a key cannot widen what a logged-in viewer may do, nor the reverse."""
    viewer = make_user("viewer", "68")
    key = make_source("VN")
    me = client.get("/api/auth/me", headers={**viewer, **key}).json()
    assert me["kind"] == "user" and me["role"] == "viewer"


def test_source_management_is_audited(client: TestClient, make_user, session_factory) -> None:
    integrator = make_user("integrator", "68")
    name = client.get("/api/auth/me", headers=integrator).json()["name"]
    created = register(client, integrator).json()
    client.post(f"/api/sources/{created['id']}/rotate-key", headers=integrator)
    client.post(f"/api/sources/{created['id']}/disable", headers=integrator)
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.target_type == "source",
                                                           AuditEntry.target_id == str(created["id"]))).all()
    assert sorted(e.action for e in entries) == ["source.create", "source.disable", "source.rotate_key"]
    assert {e.actor_name for e in entries} == {name}
    assert all(created["api_key"] not in str(e.detail) for e in entries)


def test_a_demo_source_key_is_refused_outside_demo_mode(client: TestClient, session_factory) -> None:
    """The test app runs with demo_mode off: a demo source's key opens nothing, even once it is cached."""
    from saola.core.auth.context import system_actor
    from saola.core.sources.service import create_source
    from saola.db.engine import transaction

    with transaction(session_factory) as session:
        _, key = create_source(session, actor=system_actor("test"), name=unique("demo-src"), scope="68",
                               is_demo=True)
    for _ in range(2):  # the second answer comes from the lookup cache
        r = client.get("/api/auth/me", headers={"X-API-Key": key})
        assert r.status_code == 401 and "demo" in r.json()["detail"]
    reading = {"items": [{"indicator": "x.y", "unit": "68", "ts": "2026-11-25T08:00:00+07:00", "value": 1}]}
    assert client.post("/api/ingest/observations", json=reading, headers={"X-API-Key": key}).status_code == 401
