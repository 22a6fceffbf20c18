"""The audit log: logins and creations are recorded with the actor's name, reads stay in scope, rows never change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from saola.core.audit.models import AuditEntry
from saola.core.audit.service import audit
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user
from saola.db.engine import transaction
from tests.conftest import unique


def me(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return client.get("/api/auth/me", headers=headers).json()


def entries(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/api/audit", params={"limit": 1000, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_login_is_recorded_with_the_user(client: TestClient, session_factory, admin_headers) -> None:
    username, password = unique("u"), "pw-" + unique()
    with transaction(session_factory) as session:
        user_id = str(create_user(session, actor=system_actor("test"), username=username, password=password,
                                  role="viewer", scope="68").id)
    assert client.post("/api/auth/token", data={"username": username, "password": password}).status_code == 200
    found = entries(client, admin_headers, action="auth.login", actor_name=username)
    assert found["total"] == 1
    entry = found["items"][0]
    assert entry["actor_kind"] == "user" and entry["actor_scope"] == "68" and entry["target_id"] == user_id


def test_failed_logins_write_nothing_as_the_user(client: TestClient, admin_headers) -> None:
    name = unique("nobody")
    assert client.post("/api/auth/token", data={"username": name, "password": "x" * 10}).status_code == 401
    assert entries(client, admin_headers, actor_name=name)["total"] == 0


def test_creations_are_recorded_with_the_creator(client: TestClient, make_user, admin_headers) -> None:
    admin_68 = make_user("admin", "68")
    creator = me(client, admin_68)["name"]
    body = {"username": unique("nu"), "password": "long-enough-pw", "role": "integrator", "scope": "68"}
    user = client.post("/api/users", json=body, headers=admin_68).json()
    source = client.post("/api/sources", json={"name": unique("src"), "scope": "68"}, headers=admin_68).json()
    found = entries(client, admin_headers, actor_name=creator)["items"]
    by_action = {e["action"]: e for e in found}
    assert by_action["user.create"]["target_id"] == user["id"]
    assert by_action["user.create"]["detail"] == {"username": body["username"], "role": "integrator", "scope": "68"}
    assert by_action["source.create"]["target_id"] == str(source["id"])
    assert "long-enough-pw" not in str(found)
    assert [e["action"] for e in found][:2] == ["source.create", "user.create"]  # newest first


def test_a_refused_change_leaves_no_entry(client: TestClient, make_user, admin_headers) -> None:
    admin_68 = make_user("admin", "68")
    creator = me(client, admin_68)["name"]
    body = {"username": unique("nu"), "password": "long-enough-pw", "role": "viewer", "scope": "79"}
    assert client.post("/api/users", json=body, headers=admin_68).status_code == 403
    taken = {**body, "scope": "68"}
    assert client.post("/api/users", json=taken, headers=admin_68).status_code == 201
    assert client.post("/api/users", json=taken, headers=admin_68).status_code == 409
    assert entries(client, admin_headers, actor_name=creator, action="user.create")["total"] == 1


@pytest.mark.parametrize("role", ["viewer", "operator", "agency_staff", "integrator"])
def test_reading_needs_audit_read(client: TestClient, make_user, role: str) -> None:
    assert client.get("/api/audit", headers=make_user(role, "68")).status_code == 403


def test_reading_stays_inside_scope(client: TestClient, make_user, admin_headers) -> None:
    outsider = make_user("admin", "79")
    outsider_name = me(client, outsider)["name"]
    national_name = me(client, admin_headers)["name"]
    leader = make_user("leader", "68")
    communes = {u["code"] for u in client.get("/api/units/68/children", headers=leader).json()}
    seen = entries(client, leader)
    assert seen["items"] and {e["actor_scope"] for e in seen["items"]} <= communes | {"68"}
    # asking by name does not reach actors outside the scope, nor above it
    assert entries(client, leader, actor_name=outsider_name)["total"] == 0
    assert entries(client, leader, actor_name=national_name)["total"] == 0
    assert entries(client, admin_headers, actor_name=outsider_name)["total"] >= 1
    ward_leader = make_user("leader", "24781")
    assert {e["actor_scope"] for e in entries(client, ward_leader)["items"]} <= {"24781"}


def test_filters_by_time(client: TestClient, admin_headers, session_factory) -> None:
    actor = system_actor(unique("clock"))
    with transaction(session_factory) as session:
        audit(session, actor=actor, action="test.tick", target_type="test", target_id="1")
    now = datetime.now(UTC)
    assert entries(client, admin_headers, actor_name=actor.name, since=(now - timedelta(minutes=5)).isoformat(),
                   until=(now + timedelta(minutes=5)).isoformat())["total"] == 1
    assert entries(client, admin_headers, actor_name=actor.name,
                   since=(now + timedelta(minutes=5)).isoformat())["total"] == 0


def test_naive_times_are_refused(client: TestClient, admin_headers) -> None:
    r = client.get("/api/audit", params={"since": "2025-01-01T00:00:00"}, headers=admin_headers)
    assert r.status_code == 422


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor_name = 'someone else' WHERE target_id = :mark",
        "UPDATE audit_log SET detail = '{}' WHERE target_id = :mark",
        "DELETE FROM audit_log WHERE target_id = :mark",
    ],
)
def test_database_refuses_changes(session_factory, statement: str) -> None:
    mark = unique("mark")
    with transaction(session_factory) as session:
        audit(session, actor=system_actor("test"), action="test.mark", target_type="test", target_id=mark)
    with session_factory() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement), {"mark": mark})
        session.rollback()
        count = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.target_id == mark))
        assert count == 1
        assert session.scalar(select(AuditEntry.actor_name).where(AuditEntry.target_id == mark)) == "test"
