"""Logging in, bearer tokens, roles and scopes of users, and the refusal of insecure settings."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.config import DEMO_SECRET_KEY, InsecureSettingsError, Settings
from saola.core.auth.context import system_actor
from saola.core.auth.models import User
from saola.core.auth.service import TOKEN_ALGORITHM, create_user
from saola.db.engine import transaction
from saola.db.types import utcnow
from tests.conftest import unique

DALAT_WARD = "24781"


@pytest.fixture
def account(session_factory) -> Any:  # type: ignore[no-untyped-def]
    """Create a user directly and return (user id, username, password)."""

    def _make(role: str = "viewer", scope: str = "68") -> tuple[str, str, str]:
        username, password = unique("u"), "pw-" + unique()
        with transaction(session_factory) as session:
            user = create_user(session, actor=system_actor("test"), username=username, password=password,
                               role=role, scope=scope)
            user_id = str(user.id)
        return user_id, username, password

    return _make


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/auth/token", data={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user_body(scope: str, role: str = "viewer") -> dict[str, Any]:
    return {"username": unique("nu"), "password": "long-enough-pw", "role": role, "scope": scope}


# --- logging in -----------------------------------------------------------------------------------------------


def test_login_and_me(client: TestClient, account, settings: Settings) -> None:
    _, username, password = account("leader", "68")
    r = login(client, username, password)
    assert r.status_code == 200
    token = r.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == settings.token_ttl_minutes * 60
    me = client.get("/api/auth/me", headers=bearer(token["access_token"]))
    assert me.status_code == 200
    body = me.json()
    assert body["kind"] == "user" and body["name"] == username and body["role"] == "leader"
    assert body["scope_code"] == "68" and "audit:read" in body["permissions"] and "users:write" not in body[
        "permissions"]


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient, account) -> None:
    _, username, password = account()
    wrong = login(client, username, password + "x")
    unknown = login(client, unique("nobody"), password)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers.get("www-authenticate") == "Bearer"


def test_inactive_user_cannot_log_in_nor_use_an_old_token(client: TestClient, account, session_factory) -> None:
    _, username, password = account()
    token = login(client, username, password).json()["access_token"]
    with transaction(session_factory) as session:
        session.scalar(select(User).where(User.username == username)).is_active = False  # type: ignore[union-attr]
    r = login(client, username, password)
    assert r.status_code == 401
    assert r.json() == login(client, unique("nobody"), password).json()  # no hint that the account exists
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401


def _token(settings: Settings, user_id: str, *, key: str | None = None, **claims: Any) -> str:
    now = utcnow()
    payload = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key or settings.secret_key,
                      algorithm=TOKEN_ALGORITHM)


def test_forged_and_expired_tokens_are_refused(client: TestClient, account, settings: Settings) -> None:
    user_id, _, _ = account()
    assert client.get("/api/auth/me", headers=bearer(_token(settings, user_id))).status_code == 200
    bad = [
        _token(settings, user_id, exp=utcnow() - timedelta(seconds=1)),  # expired
        _token(settings, user_id, key="another-key-that-is-also-long-enough-0123456789"),  # other key
        _token(settings, user_id, key=DEMO_SECRET_KEY),  # the public demo key
        _token(settings, user_id, exp=None),  # no expiry
        _token(settings, str(uuid.uuid4())),  # no such user
        _token(settings, "not-a-uuid"),
        jwt.encode({"sub": user_id, "exp": utcnow() + timedelta(minutes=5)}, key=None, algorithm="none"),
        jwt.encode({"sub": user_id, "exp": utcnow() + timedelta(minutes=5)}, settings.secret_key,
                   algorithm="HS512"),
        "not-a-jwt",
        "",
    ]
    for token in bad:
        r = client.get("/api/auth/me", headers=bearer(token))
        assert r.status_code == 401, token
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401


def test_token_of_a_demoted_user_follows_the_database(client: TestClient, account, session_factory) -> None:
    """The role in the token is informative only; the server reads the user's current role and scope."""
    _, username, password = account("admin", "68")
    token = login(client, username, password).json()["access_token"]
    with transaction(session_factory) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        user.role, user.scope_code = "viewer", DALAT_WARD
    me = client.get("/api/auth/me", headers=bearer(token)).json()
    assert me["role"] == "viewer" and me["scope_code"] == DALAT_WARD
    assert client.post("/api/users", json=new_user_body(DALAT_WARD), headers=bearer(token)).status_code == 403


# --- role permissions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "leader", "operator", "agency_staff", "integrator"])
def test_only_admins_create_users(client: TestClient, make_user, role: str) -> None:
    headers = make_user(role, "68")
    assert client.post("/api/users", json=new_user_body("68"), headers=headers).status_code == 403
    assert client.get("/api/users", headers=headers).status_code == 403


def test_viewer_cannot_create_anything(client: TestClient, make_user) -> None:
    viewer = make_user("viewer", "VN")
    assert client.post("/api/users", json=new_user_body("68"), headers=viewer).status_code == 403
    assert client.post("/api/sources", json={"name": unique("s"), "scope": "68"}, headers=viewer).status_code == 403
    entity = {"type": "any.type", "name": "Trạm", "unit_code": "68"}
    assert client.post("/api/entities", json=entity, headers=viewer).status_code == 403
    agency = {"unit_code": "68", "code": unique("ag"), "name": "Sở"}
    assert client.post("/api/agencies", json=agency, headers=viewer).status_code == 403


# --- scope ----------------------------------------------------------------------------------------------------


def test_leader_of_a_province_cannot_create_users_elsewhere(client: TestClient, make_user) -> None:
    leader = make_user("leader", "68")
    for scope in ["79", "VN", "68", DALAT_WARD]:
        assert client.post("/api/users", json=new_user_body(scope), headers=leader).status_code == 403


def test_province_admin_creates_users_only_inside_the_province(client: TestClient, make_user) -> None:
    admin_68 = make_user("admin", "68")
    assert client.post("/api/users", json=new_user_body("68", "leader"), headers=admin_68).status_code == 201
    r = client.post("/api/users", json=new_user_body(DALAT_WARD, "agency_staff"), headers=admin_68)
    assert r.status_code == 201 and r.json()["scope_code"] == DALAT_WARD
    assert client.post("/api/users", json=new_user_body("79"), headers=admin_68).status_code == 403
    assert client.post("/api/users", json=new_user_body("VN", "admin"), headers=admin_68).status_code == 403
    assert client.post("/api/users", json=new_user_body("26506"), headers=admin_68).status_code == 403  # ward of 79
    r = client.post("/api/users", json=new_user_body("99999"), headers=admin_68)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "scope"]


def test_commune_admin_cannot_reach_up_or_sideways(client: TestClient, make_user) -> None:
    ward_admin = make_user("admin", DALAT_WARD)
    assert client.post("/api/users", json=new_user_body(DALAT_WARD), headers=ward_admin).status_code == 201
    for scope in ["68", "24787", "VN"]:
        assert client.post("/api/users", json=new_user_body(scope), headers=ward_admin).status_code == 403


def test_user_listing_and_reading_stay_inside_scope(client: TestClient, make_user, admin_headers) -> None:
    admin_68 = make_user("admin", "68")
    inside = client.post("/api/users", json=new_user_body(DALAT_WARD), headers=admin_headers).json()
    outside = client.post("/api/users", json=new_user_body("79"), headers=admin_headers).json()
    communes = {u["code"] for u in client.get("/api/units/68/children", headers=admin_68).json()}
    listing = client.get("/api/users", params={"limit": 1000}, headers=admin_68).json()
    assert listing and {u["scope_code"] for u in listing} <= communes | {"68"}
    assert outside["id"] not in {u["id"] for u in listing}
    assert client.get(f"/api/users/{inside['id']}", headers=admin_68).status_code == 200
    assert client.get(f"/api/users/{outside['id']}", headers=admin_68).status_code == 404
    assert client.get(f"/api/users/{uuid.uuid4()}", headers=admin_68).status_code == 404
    assert client.get(f"/api/users/{outside['id']}", headers=admin_headers).status_code == 200


def test_user_input_is_checked(client: TestClient, admin_headers) -> None:
    body = new_user_body("68")
    assert client.post("/api/users", json=body, headers=admin_headers).status_code == 201
    assert client.post("/api/users", json=body, headers=admin_headers).status_code == 409
    for bad in [{"role": "pharaoh"}, {"password": "short"}, {"username": "has space"}, {"is_active": False}]:
        r = client.post("/api/users", json={**new_user_body("68"), **bad}, headers=admin_headers)
        assert r.status_code == 422, bad
    listed = client.get("/api/users", params={"limit": 5}, headers=admin_headers).json()
    assert all("password" not in u and "password_hash" not in u for u in listed)


# --- settings -------------------------------------------------------------------------------------------------


def test_demo_secret_is_refused_outside_demo_mode() -> None:
    with pytest.raises(InsecureSettingsError):
        Settings(secret_key=DEMO_SECRET_KEY, demo_mode=False).check_secure()
    Settings(secret_key=DEMO_SECRET_KEY, demo_mode=True).check_secure()


@pytest.mark.parametrize("key", ["", "short", "x" * 31])
def test_short_secrets_are_refused(key: str) -> None:
    with pytest.raises(InsecureSettingsError):
        Settings(secret_key=key, demo_mode=False).check_secure()


def test_a_long_private_secret_is_accepted() -> None:
    Settings(secret_key="k" * 32, demo_mode=False).check_secure()
