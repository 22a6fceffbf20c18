"""Abuse limits and bad input: each limit and each kind of bad input gets a clear 4xx, and nothing is written."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from PIL import Image

from saola.domains.citizen_reports.photos import MAX_PIXELS
from saola.packs import hookimpl
from tests.citizen_reports.conftest import jpeg_with_gps, new_ip, phone, place, png, submit


def test_per_ip_limit(variant: Any, citizen: Any) -> None:
    app = variant(citizen_reports_per_ip_per_hour=3)
    ip = new_ip()
    client = citizen(app, ip)
    for _ in range(3):
        assert submit(client).status_code == 201
    refused = submit(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600" and refused.json()["code"] == "rate_limited"
    assert submit(citizen(app)).status_code == 201  # another address is not held back


def test_per_contact_limit_by_phone_and_by_email(variant: Any, citizen: Any) -> None:
    app = variant(citizen_reports_per_contact_per_day=2)
    own = phone()
    for _ in range(2):
        assert submit(citizen(app), contact_phone=own).status_code == 201
    # Same number written differently, from another address: still the same contact.
    spaced = f"{own[:4]} {own[4:7]} {own[7:]}"
    assert submit(citizen(app), contact_phone=spaced).status_code == 429
    email = f"{phone()}@example.vn"
    for _ in range(2):
        assert submit(citizen(app), contact_email=email).status_code == 201
    assert submit(citizen(app), contact_email=email.upper()).status_code == 429


def test_photo_size_and_count_caps(variant: Any, citizen: Any) -> None:
    app = variant(citizen_reports_max_photo_bytes=2048)
    big = jpeg_with_gps(size=(400, 400))
    assert len(big) > 2048
    r = submit(citizen(app), photos=[("big.jpg", big, "image/jpeg")])
    assert r.status_code == 413 and r.json()["errors"][0]["loc"] == ["body", "photos", 0]
    six = [(f"p{i}.png", png(), "image/png") for i in range(6)]
    r = submit(citizen(), photos=six)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "photos"]
    five = [(f"p{i}.png", png(), "image/png") for i in range(5)]
    assert submit(citizen(), photos=five).status_code == 201


def test_request_body_cap(variant: Any, citizen: Any) -> None:
    app = variant(max_body_bytes=4096)
    noise = io.BytesIO()
    Image.frombytes("RGB", (100, 100), os.urandom(30_000)).save(noise, format="PNG")  # noise does not compress
    r = submit(citizen(app), photos=[("a.png", noise.getvalue(), "image/png")])
    assert r.status_code == 413


@pytest.mark.parametrize("content, name", [
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "x.gif"),
    (b"%PDF-1.4 not a photo", "x.jpg"),
    (b"\xff\xd8\xff\xe0 truncated jpeg", "x.jpg"),
    (b"", "empty.png"),
])
def test_photos_that_are_not_photos(citizen: Any, content: bytes, name: str) -> None:
    r = submit(citizen(), photos=[(name, content, "image/jpeg")])
    assert r.status_code == 415 or (r.status_code == 422 and not content), r.text
    if r.status_code == 415:
        assert r.json()["errors"][0]["loc"] == ["body", "photos", 0]


def test_decompression_bomb_is_refused(citizen: Any) -> None:
    side = int(MAX_PIXELS ** 0.5) + 200
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")  # tiny file, huge image
    r = submit(citizen(), photos=[("bomb.png", out.getvalue(), "image/png")])
    assert r.status_code == 415


@pytest.mark.parametrize("changes, loc", [
    ({"category": "aliens"}, ["body", "category"]),
    ({"description": ""}, ["body", "description"]),
    ({"description": "x" * 5001}, ["body", "description"]),
    ({"lon": "", "lat": "", "address": ""}, ["body", "lon"]),
    ({"lat": ""}, ["body", "lat"]),
    ({"lon": "east"}, ["body", "lon"]),
    ({"lon": "nan"}, ["body", "lon"]),
    ({"lat": "95"}, ["body", "lat"]),
    ({"contact_email": "not-an-email"}, ["body", "contact_email"]),
    ({"contact_phone": "call me"}, ["body", "contact_phone"]),
    ({"share_contact": "maybe"}, ["body", "share_contact"]),
    ({"unit_code": "99999"}, ["body", "unit_code"]),
    ({"colour": "red"}, ["body", "colour"]),
    ({"address": "a\x00b"}, ["body", "address"]),
])
def test_bad_fields_are_named(citizen: Any, changes: dict, loc: list) -> None:
    r = submit(citizen(), **changes)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]]


def test_bad_json_and_wrong_content_type(citizen: Any) -> None:
    client = citizen()
    r = client.post("/api/public/citizen-reports", json={"description": "x", "category": "lighting", "lon": 500})
    assert r.status_code == 422 and ["body", "lon"] in [e["loc"] for e in r.json()["errors"]]
    r = client.post("/api/public/citizen-reports", content=b"<report/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 415
    r = client.post("/api/public/citizen-reports", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_address_alone_is_a_location(citizen: Any) -> None:
    r = submit(citizen(), lon="", lat="", address=f"Hẻm {phone()} đường Hai Bà Trưng")
    assert r.status_code == 201


class Refuse:
    """A captcha verifier that refuses every token but 'good'."""

    @hookimpl
    def saola_verify_captcha(self, token: str, remote_ip: str, purpose: str) -> bool | None:
        assert purpose == "citizen_report" and remote_ip
        return token == "good"


def test_captcha_hook_refuses_and_accepts(app: Any, citizen: Any, variant: Any) -> None:
    pm = app.state.plugin_manager
    plugin = Refuse()
    pm.register(plugin)
    try:
        r = submit(citizen(), captcha_token="bad")
        assert r.status_code == 400 and r.json()["code"] == "captcha_failed"
        assert submit(citizen(), captcha_token="good").status_code == 201
        lon, lat = place()
        r = citizen().post("/api/public/citizen-reports", headers={"X-Captcha-Token": "good"},
                           json={"description": "Rác", "category": "environment", "lon": lon, "lat": lat})
        assert r.status_code == 201
    finally:
        pm.unregister(plugin)


def test_captcha_required_without_a_verifier_refuses(variant: Any, citizen: Any) -> None:
    app = variant(citizen_reports_require_captcha=True)
    r = submit(citizen(app), captcha_token="anything")
    assert r.status_code == 400 and r.json()["errors"][0]["loc"] == ["body", "captcha_token"]


def test_duplicates_are_linked_not_multiplied(citizen: Any, client: Any) -> None:
    lon, lat = place()
    first = submit(citizen(), lon=str(lon), lat=str(lat)).json()
    near = submit(citizen(), lon=str(lon + 0.0002), lat=str(lat)).json()  # about 22 m east
    assert near["linked"] is True and near["report_code"] == first["report_code"]
    assert near["tracking_code"] != first["tracking_code"]
    other_kind = submit(citizen(), lon=str(lon), lat=str(lat), category="trees").json()
    assert other_kind["linked"] is False
    far = submit(citizen(), lon=str(lon + 0.002), lat=str(lat)).json()  # about 220 m
    assert far["linked"] is False and far["report_code"] != first["report_code"]
    view = client.get(f"/api/public/citizen-reports/{near['tracking_code']}").json()
    assert view["linked"] is True and view["report_code"] == first["report_code"]
    # One point on the map for the problem, not two.
    features = client.get("/api/public/citizen-reports/map.geojson").json()["features"]
    assert sum(1 for f in features if f["id"] == first["report_code"]) == 1


def test_duplicates_by_address_and_window(variant: Any, citizen: Any) -> None:
    address = f"Chợ Đà Lạt, sạp {phone()}"
    first = submit(citizen(), lon="", lat="", address=address).json()
    again = submit(citizen(), lon="", lat="", address=address.upper()).json()
    assert again["linked"] and again["report_code"] == first["report_code"]
    no_window = variant(citizen_reports_duplicate_minutes=0)
    third = submit(citizen(no_window), lon="", lat="", address=address).json()
    assert third["linked"] is False


def test_concurrent_submissions_keep_the_limits_and_link_duplicates(variant: Any, citizen: Any) -> None:
    """Eight submissions at once from one address, of one problem: three pass the limit, and they make one case."""
    from concurrent.futures import ThreadPoolExecutor

    app = variant(citizen_reports_per_ip_per_hour=3)
    ip = new_ip()
    lon, lat = place()

    def send(_: int) -> Any:
        return submit(citizen(app, ip), lon=str(lon), lat=str(lat)).json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))
    accepted = [a for a in answers if "tracking_code" in a]
    assert len(accepted) == 3
    assert sum(1 for a in answers if a.get("code") == "rate_limited") == 5
    assert len({a["report_code"] for a in accepted}) == 1
    assert sorted(a["linked"] for a in accepted) == [False, True, True]
