"""Public warnings as OASIS CAP 1.2: each message and the Atom feed are validated by `capparselib` (the CAP and Atom
schemas it ships), publishing needs the right role, resolving cancels, and bad input changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from saola.core.alerts.models import Alert, AlertPublication
from tests.ops import test_rules_helpers as shared
from tests.ops.test_rules_helpers import WARD, alerts_of, feed, make_entity, make_indicator, make_rule

capparselib = pytest.importorskip("capparselib.parsers")

declared_types = shared.declared_types
engine = shared.engine
headers_for = shared.headers_for

CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00$")


def _alert(session_factory: Any, registry: Any, *, entity: bool = False, severity: str = "high") -> Alert:
    code = make_indicator(session_factory)
    station = make_entity(session_factory, WARD, geometry={"type": "Point", "coordinates": [108.4419, 11.9404]}) \
        if entity else None
    rule_id = make_rule(session_factory, registry, kind="threshold", params={"indicator": code, "threshold": 150},
                        severity=severity)
    feed(session_factory, code, [(0, 180.0)], unit=None if station else WARD, entity=station)
    [alert] = alerts_of(session_factory, rule_id)
    return alert


def _publish_body(**over: Any) -> dict[str, Any]:
    return {
        "category": "Env", "urgency": "Immediate", "certainty": "Observed",
        "vi": {"event": "Ô nhiễm không khí", "headline": "Chất lượng không khí xấu tại Đà Lạt",
               "description": "Chỉ số AQI vượt 150 tại phường Xuân Hương.",
               "instruction": "Hạn chế ra ngoài, đeo khẩu trang khi cần thiết."},
        "en": {"event": "Air pollution", "headline": "Unhealthy air quality in Da Lat",
               "description": "AQI above 150 in Xuan Huong ward.", "instruction": "Limit time outdoors."},
        **over,
    }


def _parse(text: str) -> list[dict[str, Any]]:
    """Parse and validate with capparselib: it raises when the document does not match its schema."""
    return capparselib.CAPParser(text).as_dict()


def test_published_alert_is_valid_cap_and_listed_in_the_atom_feed(client, headers_for, session_factory, engine,
                                                                 declared_types) -> None:
    alert = _alert(session_factory, declared_types, entity=True, severity="critical")
    operator = headers_for("operator", "68")
    r = client.post(f"/api/alerts/{alert.id}/publish", json=_publish_body(), headers=operator)
    assert r.status_code == 201, r.text
    publication = r.json()
    assert publication["msg_type"] == "Alert" and publication["severity"] == "Extreme"
    assert publication["url"] == f"/cap/{publication['identifier']}.xml"

    r = client.get(publication["url"])  # public: no credentials
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
    assert "urn:oasis:names:tc:emergency:cap:1.2" in r.text
    [cap] = _parse(r.text)
    assert str(cap["cap_id"]) == publication["identifier"] and str(cap["cap_sender"]) == "saola@VN-68"
    assert CAP_TIME.match(str(cap["cap_sent"]))
    assert (str(cap["cap_status"]), str(cap["cap_message_type"]), str(cap["cap_scope"])) == ("Actual", "Alert",
                                                                                             "Public")
    vi, en = cap["cap_info"]
    assert str(vi["cap_language"]) == "vi-VN" and str(en["cap_language"]) == "en-US"
    assert str(vi["cap_category"]) == "Env" and str(vi["cap_event"]) == "Ô nhiễm không khí"
    assert (str(vi["cap_urgency"]), str(vi["cap_severity"]), str(vi["cap_certainty"])) == ("Immediate", "Extreme",
                                                                                         "Observed")
    assert str(vi["cap_headline"]) == "Chất lượng không khí xấu tại Đà Lạt"
    assert str(en["cap_instruction"]) == "Limit time outdoors."
    assert CAP_TIME.match(str(vi["cap_expires"]))
    [area] = vi["cap_area"]
    assert "Trạm" in str(area["area_description"])
    assert [str(c) for c in area["circles"]] == ["11.9404,108.4419 5"]  # the station's point, lat first
    assert {str(g["value"]) for g in area["geocodes"]} == {WARD}

    r = client.get("/cap/alerts.atom")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    identifiers = [str(a["cap_id"]) for a in _parse(r.text)]
    assert publication["identifier"] in identifiers
    assert f'type="application/cap+xml" href="http://testserver{publication["url"]}"' in r.text


def test_update_then_cancel_when_resolved(client, headers_for, session_factory, engine, declared_types) -> None:
    alert = _alert(session_factory, declared_types)
    leader = headers_for("leader", "68")
    polygon = [[108.40, 11.90], [108.48, 11.90], [108.48, 11.97], [108.40, 11.97]]  # closed by the server
    first = client.post(f"/api/alerts/{alert.id}/publish", json=_publish_body(en=None), headers=leader).json()
    r = client.post(f"/api/alerts/{alert.id}/publish",
                    json=_publish_body(en=None, polygon=polygon, area_desc="Trung tâm Đà Lạt", severity="Severe"),
                    headers=leader)
    assert r.status_code == 201, r.text
    update = r.json()
    assert update["msg_type"] == "Update" and first["identifier"] in update["references"]
    [cap] = _parse(client.get(update["url"]).text)
    assert str(cap["cap_message_type"]) == "Update"
    assert str(cap["cap_references"]).startswith(f"saola@VN-68,{first['identifier']},")
    [info] = cap["cap_info"]
    [area] = info["cap_area"]
    assert str(area["area_description"]) == "Trung tâm Đà Lạt"
    assert [str(p) for p in area["polygons"]] == ["11.9,108.4 11.9,108.48 11.97,108.48 11.97,108.4 11.9,108.4"]

    r = client.post(f"/api/alerts/{alert.id}/resolve", json={"note": "Không khí đã trong lành"}, headers=leader)
    assert r.status_code == 200
    messages = client.get(f"/api/alerts/{alert.id}/publications", headers=leader).json()
    assert [m["msg_type"] for m in messages] == ["Alert", "Update", "Cancel"]
    cancel = messages[-1]
    [cap] = _parse(client.get(cancel["url"]).text)
    assert str(cap["cap_message_type"]) == "Cancel" and update["identifier"] in str(cap["cap_references"])
    feed_alerts = _parse(client.get("/cap/alerts.atom").text)
    mine = [a for a in feed_alerts if str(a["cap_id"]) in {m["identifier"] for m in messages}]
    assert [str(a["cap_message_type"]) for a in mine] == ["Cancel"]  # the feed shows each alert's newest message
    r = client.post(f"/api/alerts/{alert.id}/publish", json=_publish_body(), headers=leader)
    assert r.status_code == 409  # a resolved alert is not published again
    history = [h["action"] for h in client.get(f"/api/alerts/{alert.id}/history", headers=leader).json()]
    assert history == ["firing", "published", "published", "resolved"]


def _publications(session_factory: Any) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(AlertPublication)) or 0


@pytest.mark.parametrize(("over", "loc"), [
    ({"category": "Weather"}, ["body", "category"]),
    ({"urgency": "Now"}, ["body", "urgency"]),
    ({"vi": {"event": "x"}}, ["body", "vi", "headline"]),
    ({"vi": None}, ["body", "vi"]),
    ({"polygon": [[108.4, 11.9], [108.5, 11.9]]}, ["body", "polygon"]),
    ({"polygon": [[108.4, 11.9], [108.5, 11.9], [108.4, 11.9], [108.5, 11.9]]}, ["body", "polygon"]),
    ({"polygon": [[200, 11.9], [108.5, 11.9], [108.5, 12.0]]}, ["body", "polygon"]),
    ({"circle": {"lat": 11.9, "lon": 108.4, "radius_km": 0}}, ["body", "circle", "radius_km"]),
    ({"circle": {"lat": 95, "lon": 108.4, "radius_km": 1}}, ["body", "circle", "lat"]),
    ({"expires_hours": 0}, ["body", "expires_hours"]),
    ({"web": "ftp://example.org"}, ["body", "web"]),
    ({"area_desc": ""}, ["body", "area_desc"]),
    ({"colour": "red"}, ["body", "colour"]),
])
def test_bad_publications_are_refused_and_nothing_is_sent(client, headers_for, session_factory, engine,
                                                          declared_types, over, loc) -> None:
    alert = _alert(session_factory, declared_types)
    before = _publications(session_factory)
    r = client.post(f"/api/alerts/{alert.id}/publish", json=_publish_body(**over), headers=headers_for())
    assert r.status_code == 422, r.text
    assert loc in [e["loc"][:len(loc)] for e in r.json()["errors"]], r.json()
    assert _publications(session_factory) == before


def test_only_publishers_in_scope_publish(client, headers_for, session_factory, engine, declared_types) -> None:
    alert = _alert(session_factory, declared_types)
    before = _publications(session_factory)
    for role, scope, code in [("viewer", "68", 403), ("agency_staff", WARD, 403), ("integrator", "68", 403),
                              ("operator", "79", 404)]:
        r = client.post(f"/api/alerts/{alert.id}/publish", json=_publish_body(), headers=headers_for(role, scope))
        assert r.status_code == code, (role, r.text)
    assert _publications(session_factory) == before
    assert client.get("/cap/not-published-anywhere.xml").status_code == 404
    assert client.get("/cap/bad,identifier.xml").status_code == 422
    assert f"{alert.id}" not in client.get("/cap/alerts.atom").text  # unpublished alerts are not public
