"""The scope matrix: staff of ward A, ward B, another province, a department, the province's leader and the
national admin each see exactly their cases through read, list, search, statistics, CSV and XLSX export,
timeline, attachments, writes, and the bus messages the stream filters by unit_code."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import Message
from saola.core.auth.context import system_actor
from saola.core.cases.service import open_case, sees_message
from saola.db.engine import transaction
from tests.conftest import unique
from tests.ops.test_cases_helpers import (
    OTHER_WARD,
    PROVINCE,
    WARD_A,
    WARD_B,
    Person,
    bus_messages,
    make_agency,
    make_person,
    open_incident,
    png_bytes,
    upload,
)


@pytest.fixture(scope="module")
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    """One client for the module; without its lifespan no background jobs write while the matrix is read."""
    return TestClient(app)


@pytest.fixture(scope="module")
def world(client: TestClient, session_factory: sessionmaker[Session], app):  # type: ignore[no-untyped-def]
    """Six people, four cases (one per ward, one at the province owned by a department, one in another
    province), a comment and a file on each, and every bus message that setting them up produced."""

    def person(role: str, scope: str, agency_id: uuid.UUID | None = None) -> Person:
        return make_person(client, session_factory, app.state.registry, role, scope, agency_id)

    department = make_agency(session_factory, PROVINCE)
    people = {
        "national": person("admin", "VN"),
        "leader": person("leader", PROVINCE),
        "ward_a": person("agency_staff", WARD_A),
        "ward_b": person("agency_staff", WARD_B),
        "elsewhere": person("agency_staff", OTHER_WARD),
        "department": person("agency_staff", PROVINCE, agency_id=department),
    }
    tag = unique("m")
    admin = people["national"].headers
    with bus_messages() as seen:
        cases = {
            "a": open_incident(client, admin, WARD_A, title=f"Ngập úng {tag}"),
            "b": open_incident(client, admin, WARD_B, title=f"Cây đổ {tag}"),
            "p": open_incident(client, admin, PROVINCE, title=f"Ô nhiễm sông {tag}",
                               owner_agency_id=str(department)),
            "x": open_incident(client, admin, OTHER_WARD, title=f"Sạt lở {tag}"),
        }
        files = {}
        for key, case in cases.items():
            r = client.post(f"/api/cases/{case['id']}/comments", json={"text": f"Ghi chú {key}"}, headers=admin)
            assert r.status_code == 201
            r = client.post(f"/api/cases/{case['id']}/status", json={"status": "acknowledged"}, headers=admin)
            assert r.status_code == 200
            r = upload(client, admin, case["id"], f"{key}.png", png_bytes())
            assert r.status_code == 201
            files[key] = r.json()["id"]
    return {"people": people, "cases": cases, "files": files, "tag": tag, "messages": list(seen)}


EXPECTED = {
    "national": {"a", "b", "p", "x"},
    "leader": {"a", "b", "p"},
    "ward_a": {"a"},
    "ward_b": {"b"},
    "elsewhere": {"x"},
    "department": {"p"},
}


def _keys(world: dict, ids: set[str]) -> set[str]:
    by_id = {c["id"]: k for k, c in world["cases"].items()}
    return {by_id[i] for i in ids if i in by_id}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_reads_lists_and_searches(client: TestClient, world: dict, who: str) -> None:
    me: Person = world["people"][who]
    expected = EXPECTED[who]
    for key, case in world["cases"].items():
        want = 200 if key in expected else 404
        assert client.get(f"/api/cases/{case['id']}", headers=me.headers).status_code == want, (who, key)
        assert client.get(f"/api/cases/{case['id']}/timeline", headers=me.headers).status_code == want
        assert client.get(f"/api/cases/{case['id']}/sop", headers=me.headers).status_code == want
        assert client.get(f"/api/cases/{case['id']}/attachments", headers=me.headers).status_code == want
        got = client.get(f"/api/cases/{case['id']}/attachments/{world['files'][key]}", headers=me.headers)
        assert got.status_code == want
        if want == 200:
            assert got.content == png_bytes()
    tag = world["tag"]
    r = client.get(f"/api/cases?q={tag}&limit=500", headers=me.headers)
    assert r.status_code == 200 and r.json()["total"] == len(expected)
    assert _keys(world, {c["id"] for c in r.json()["items"]}) == expected
    # Asking for another unit's cases by filter returns nothing from outside the scope.
    for unit in (WARD_A, WARD_B, PROVINCE, OTHER_WARD, "VN"):
        r = client.get(f"/api/cases?q={tag}&unit={unit}&limit=500", headers=me.headers)
        assert _keys(world, {c["id"] for c in r.json()["items"]}) <= expected
    r = client.get(f"/api/cases?q={tag}&status=acknowledged&type=incident&limit=500", headers=me.headers)
    assert _keys(world, {c["id"] for c in r.json()["items"]}) == expected
    # A file of a case outside the scope cannot be fetched through a case inside it either.
    inside = sorted(expected)[0]
    for key in {"a", "b", "p", "x"} - expected:
        r = client.get(f"/api/cases/{world['cases'][inside]['id']}/attachments/{world['files'][key]}",
                       headers=me.headers)
        assert r.status_code == 404


@pytest.mark.parametrize("who", list(EXPECTED))
def test_statistics_and_exports(client: TestClient, world: dict, who: str) -> None:
    me: Person = world["people"][who]
    expected = EXPECTED[who]
    tag = world["tag"]
    units = {key: world["cases"][key]["unit_code"] for key in expected}
    for group_by in ("unit", "agency", "type"):
        r = client.get(f"/api/cases/stats?q={tag}&group_by={group_by}", headers=me.headers)
        assert r.status_code == 200, r.text
        stats = r.json()
        assert stats["totals"]["total"] == len(expected)
        assert stats["totals"]["by_status"] == {"acknowledged": len(expected)}
        if group_by == "unit":
            assert {row["key"] for row in stats["items"]} == set(units.values())
    r = client.get(f"/api/cases/export?q={tag}&format=csv", headers=me.headers)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    codes = {world["cases"][k]["code"]: k for k in world["cases"]}
    assert {codes[row[0]] for row in rows[1:]} == expected
    assert not any(world["cases"][k]["title"] in r.content.decode("utf-8-sig") for k in set(codes.values())
                   - expected)
    r = client.get(f"/api/cases/export?q={tag}&format=xlsx", headers=me.headers)
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert {codes[row[0].value] for row in list(sheet.iter_rows())[1:]} == expected


@pytest.mark.parametrize("who", ["ward_a", "ward_b", "elsewhere", "department"])
def test_writes_outside_scope_are_not_found(client: TestClient, world: dict, who: str) -> None:
    me: Person = world["people"][who]
    for key in {"a", "b", "p", "x"} - EXPECTED[who]:
        case_id = world["cases"][key]["id"]
        attempts = [
            client.post(f"/api/cases/{case_id}/comments", json={"text": "x"}, headers=me.headers),
            client.post(f"/api/cases/{case_id}/status", json={"status": "in_progress"}, headers=me.headers),
            client.post(f"/api/cases/{case_id}/assign", json={"unit_code": WARD_A}, headers=me.headers),
            upload(client, me.headers, case_id, "x.png", png_bytes()),
            client.post(f"/api/cases/{case_id}/progress", json={"percent": 5}, headers=me.headers),
            client.post(f"/api/cases/{case_id}/delegate", json={"recipients": [{"unit_code": WARD_A}]},
                        headers=me.headers),
        ]
        assert [r.status_code for r in attempts] == [404] * len(attempts), (who, key)


def test_bus_messages_carry_the_unit_the_stream_filters_by(world: dict, session_factory: sessionmaker[Session]
                                                           ) -> None:
    messages: list[Message] = world["messages"]
    topics = {m.topic for m in messages}
    assert {"cases.created", "cases.commented", "cases.status_changed", "cases.attachment_added"} <= topics
    ours = {c["id"] for c in world["cases"].values()}
    mine = [m for m in messages if m.data.get("case_id") in ours]
    assert all(m.data["unit_code"] and m.data["unit_path"] for m in mine)
    for who, expected in EXPECTED.items():
        me: Person = world["people"][who]
        with session_factory() as session:
            delivered = {m.data["case_id"] for m in mine if sees_message(session, me.actor, m.data)}
            # Without its unit_path a message is still placed by its unit_code.
            by_code = {m.data["case_id"] for m in mine
                       if sees_message(session, me.actor, {**m.data, "unit_path": None})}
        assert _keys(world, delivered) == expected == _keys(world, by_code), who


def _read_stream(client: TestClient, person: Person, session_factory: sessionmaker[Session],
                 opened: list[tuple[str, str | None]]) -> tuple[list[dict], dict[str, str]]:
    """Follow GET /api/stream?topics=cases as `person` while cases are opened (unit, owner agency) in order;
    return the case frames received until the last one opened shows up (streams are in bus order)."""
    codes: dict[str, str] = {}
    frames: list[dict] = []
    with client.stream("GET", "/api/stream?topics=cases", headers=person.headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        with transaction(session_factory) as session:
            for unit, agency in opened:
                case = open_case(session, actor=system_actor("test"), case_type="incident",
                                 title=f"Luồng {unique()}", unit_code=unit,
                                 owner_agency_id=uuid.UUID(agency) if agency else None)
                codes[str(case.id)] = unit
        sentinel = list(codes)[-1]
        for line in r.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
                if frames[-1].get("case_id") == sentinel:
                    break
    return frames, codes


def test_the_live_stream_carries_only_cases_in_scope(client: TestClient, world: dict,
                                                     session_factory: sessionmaker[Session]) -> None:
    people = world["people"]
    # Ward B's case is opened before ward A's, so a ward A reader passes it on the way to its own.
    frames, codes = _read_stream(client, people["ward_a"], session_factory,
                                 [(WARD_B, None), (OTHER_WARD, None), (WARD_A, None)])
    assert {f["case_id"] for f in frames if f["case_id"] in codes} == {c for c, u in codes.items() if u == WARD_A}
    assert all(f["unit_code"] == WARD_A for f in frames)
    assert {f["topic"] for f in frames} == {"cases.created"}
    frames, codes = _read_stream(client, people["leader"], session_factory,
                                 [(OTHER_WARD, None), (WARD_B, None), (WARD_A, None)])
    assert {codes[f["case_id"]] for f in frames if f["case_id"] in codes} == {WARD_A, WARD_B}


def test_the_live_stream_limits_agency_staff_to_their_agency(client: TestClient, world: dict,
                                                             session_factory: sessionmaker[Session]) -> None:
    department = world["people"]["department"]
    own = world["cases"]["p"]["owner_agency_id"]
    frames, codes = _read_stream(client, department, session_factory, [(PROVINCE, None), (WARD_A, own)])
    assert [codes[f["case_id"]] for f in frames if f["case_id"] in codes] == [WARD_A]
