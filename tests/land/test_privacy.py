"""Holder names and certificate numbers are personal data: public answers never carry them; roles and scope decide."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.land.conftest import CERTIFICATE, COMMUNE, HOLDER, BaseData

PERSONAL = (HOLDER, CERTIFICATE, "holder", "certificate")


def _clean(text: str) -> None:
    for word in PERSONAL:
        assert word not in text


def test_public_answers_never_carry_holder_data(client: TestClient, base_parcels: BaseData) -> None:
    lon, lat = base_parcels.centre(2)
    x0, y0 = base_parcels.corner(0, 0)
    x1, y1 = base_parcels.corner(4, 3)
    urls = [
        f"/api/public/land/lookup?lon={lon}&lat={lat}&neighbours=true",
        f"/api/public/land/parcels/{COMMUNE}/{base_parcels.sheet_no}/2",
        f"/api/public/land/map?bbox={x0},{y0},{x1},{y1}",
        f"/ogc/collections/parcels/items?bbox={x0},{y0},{x1},{y1}&limit=100",
        f"/ogc/collections/parcels/items/{base_parcels.ids[2]}",
        f"/ogc/collections/parcels/items?sheet_no={base_parcels.sheet_no}&limit=100",
    ]
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text)
        assert base_parcels.ids[2] in r.text
        _clean(r.text)


@pytest.mark.parametrize(("role", "scope", "sees_holder"), [
    ("viewer", "68", False),
    ("operator", "68", False),
    ("agency_staff", COMMUNE, False),
    ("integrator", "68", False),
    ("leader", "68", True),
    ("admin", "VN", True),
])
def test_holder_data_only_for_allowed_roles(client: TestClient, base_parcels: BaseData,
                                            headers_for: Callable[[str, str], dict[str, str]], role: str, scope: str,
                                            sees_holder: bool) -> None:
    headers = headers_for(role, scope)
    lon, lat = base_parcels.centre(3)
    urls = [f"/api/land/lookup?lon={lon}&lat={lat}", f"/api/land/parcels/{COMMUNE}/{base_parcels.sheet_no}/3",
            f"/api/land/parcels/{base_parcels.ids[3]}"]
    for url in urls:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, (url, r.text)
        assert base_parcels.ids[3] in r.text
        if sees_holder:
            body = r.json()
            parcel = body["parcels"][0] if "parcels" in body else body
            assert parcel["holder"] == {"holder_name": HOLDER, "certificate_no": CERTIFICATE,
                                        "certificate_issued_on": "2019-05-20"}
        else:
            assert HOLDER not in r.text and CERTIFICATE not in r.text


def test_callers_outside_the_parcels_scope_learn_nothing(client: TestClient, base_parcels: BaseData,
                                                         headers_for: Callable[[str, str], dict[str, str]]) -> None:
    lon, lat = base_parcels.centre(4)
    for headers in (headers_for("leader", "79"), headers_for("agency_staff", "24787")):
        assert client.get(f"/api/land/parcels/{COMMUNE}/{base_parcels.sheet_no}/4", headers=headers).status_code == 404
        assert client.get(f"/api/land/parcels/{base_parcels.ids[4]}", headers=headers).status_code == 404
        r = client.get("/api/land/lookup", params={"lon": lon, "lat": lat}, headers=headers)
        assert r.status_code == 200 and r.json()["parcels"] == []
        _clean(r.text)


def test_the_scoped_api_needs_a_caller(client: TestClient, base_parcels: BaseData) -> None:
    lon, lat = base_parcels.centre(4)
    assert client.get("/api/land/lookup", params={"lon": lon, "lat": lat}).status_code == 401
    assert client.get(f"/api/land/parcels/{base_parcels.ids[4]}").status_code == 401


def test_reading_holder_data_is_audited(client: TestClient, base_parcels: BaseData, session_factory,  # type: ignore[no-untyped-def]
                                        headers_for: Callable[[str, str], dict[str, str]]) -> None:
    from sqlalchemy import select

    from saola.core.audit.models import AuditEntry

    headers = headers_for("leader", "68")
    me = client.get("/api/auth/me", headers=headers).json()["name"]
    assert client.get(f"/api/land/parcels/{base_parcels.ids[5]}", headers=headers).status_code == 200
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "land.holder.read",
                                                           AuditEntry.actor_name == me)).all()
    assert [e.target_id for e in entries] == [base_parcels.ids[5]]
