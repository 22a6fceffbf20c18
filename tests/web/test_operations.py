"""Operators and citizens in Chromium: acknowledge an alert, a citizen report reaches the console, parcel lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import SHEET, WARD, LiveServer, login


def test_acknowledge_alert(page: Any, live_server: LiveServer, shots: Path) -> None:
    """The operator takes the firing alert in hand from the queue; the server records who did."""
    login(page, live_server, "dieuhanh", "/console")
    row = page.locator(f"#view-alerts tr:has-text('{live_server.alert_title}')")
    row.wait_for()
    assert row.get_attribute("data-status") == "firing"
    page.screenshot(path=shots / "07-console-alerts.png")
    row.locator("button[data-action='ack']").click()
    page.wait_for_selector(f"#view-alerts tr[data-status='acknowledged']:has-text('{live_server.alert_title}')")
    alert_id = row.get_attribute("data-alert")
    token = live_server.token("dieuhanh")
    alert = httpx.get(f"{live_server.url}/api/alerts/{alert_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "dieuhanh"
    page.screenshot(path=shots / "08-console-acknowledged.png")
    page.click("#tab-incidents")
    page.wait_for_selector("#board .lane")
    page.screenshot(path=shots / "09-console-incidents.png")
    assert page.errors == []


def test_citizen_report_reaches_the_console(phone: Any, page: Any, live_server: LiveServer, shots: Path) -> None:
    """A citizen sends a report from a phone without an account; it is followed by its code and queued for operators."""
    phone.goto(f"{live_server.url}/portal")
    phone.wait_for_selector("#r-category option >> nth=1", state="attached")
    phone.select_option("#r-category", index=1)
    description = "Cây xanh gãy đổ chắn ngang đường Trần Phú, cần xử lý gấp <b>không phải HTML</b>"
    phone.fill("#r-description", description)
    phone.locator("#r-map").click()  # the place of the problem
    phone.wait_for_selector("#r-where:has-text('Vị trí')")
    phone.fill("#r-address", "Trần Phú, Phường Xuân Hương - Đà Lạt")
    phone.screenshot(path=shots / "10-portal-report-form.png", full_page=True)
    phone.click("#r-submit")
    code = phone.locator("#r-tracking").inner_text(timeout=15_000).strip()
    assert code
    phone.screenshot(path=shots / "11-portal-report-sent.png", full_page=True)
    phone.click("#r-done button.primary")
    phone.wait_for_selector("#f-status")
    report_code = phone.locator("#f-status dd").first.inner_text()
    assert "<b>" in phone.locator("#f-result p").first.inner_text()  # shown as text, never as markup
    phone.screenshot(path=shots / "12-portal-follow.png", full_page=True)

    login(page, live_server, "dieuhanh", "/console#reports")  # straight to the citizen-report queue
    row = page.locator(f"#report-list tr[data-code='{report_code}']")
    row.wait_for()
    row.click()
    page.wait_for_selector(f"#report-detail h2:has-text('{report_code}')")
    page.screenshot(path=shots / "13-console-citizen-report.png")
    assert phone.errors == [] and page.errors == []


def test_parcel_lookup_by_number_and_by_map_click(phone: Any, live_server: LiveServer, shots: Path) -> None:
    """A citizen finds a parcel by sheet and number, then by tapping it on the map, and reads its planning."""
    phone.goto(f"{live_server.url}/portal#parcel")
    phone.fill("#p-commune", WARD)
    phone.fill("#p-sheet", str(SHEET))
    phone.fill("#p-parcel", "6")
    phone.click("#parcel-form button[type=submit]")
    info = phone.locator("#p-info")
    info.wait_for()
    text = info.inner_text()
    assert "Xuân Hương" in text and "70 %" in text and "2–5" in text  # density and floors from the planning data
    phone.evaluate("document.getElementById('p-result').replaceChildren()")
    phone.wait_for_timeout(400)  # let the map finish framing the parcel before tapping it
    phone.locator("#p-map").click()  # the middle of the map, where the parcel was framed
    info.wait_for()
    assert "Thửa đất số\n6" in info.inner_text() or "6" in info.locator("dd").nth(2).inner_text()
    phone.screenshot(path=shots / "14-portal-parcel.png", full_page=True)
    phone.click("#tab-air")
    phone.wait_for_selector(".aqi-card >> nth=3")
    phone.screenshot(path=shots / "15-portal-air.png", full_page=True)
    assert phone.errors == []


def test_ward_staff_sees_only_their_ward(page: Any, live_server: LiveServer, shots: Path) -> None:
    """A ward's staff land on their ward: no province above them, no neighbouring ward to pick."""
    login(page, live_server, "xuanhuong")
    page.wait_for_selector(f"body[data-unit='{WARD}']")
    assert page.locator("#crumbs button").count() == 0
    page.wait_for_selector(f"#feed li:has-text('{live_server.alert_title}')")  # the alert of their ward
    page.goto(f"{live_server.url}/wallboard?unit=68")  # asking for the province by hand is refused by the API
    page.wait_for_selector("#toast div.error")  # ... the page says so and shows their own ward
    page.wait_for_selector(f"body[data-unit='{WARD}']")
    assert page.url.endswith("/wallboard")
    page.screenshot(path=shots / "16-ward-staff.png")


def test_admin_pages(page: Any, live_server: LiveServer, shots: Path) -> None:
    """The administrator lists sources, indicators, rules and users, and creates a user with a scope."""
    login(page, live_server, "quantri", "/admin")
    page.wait_for_selector("#list table")
    page.click(".tabs button[data-view='indicators']")
    page.wait_for_selector("#list td:has-text('kt.grdp_growth')")
    page.click("#list td:has-text('kt.grdp_growth')")
    page.wait_for_selector("#side td:has-text('68')")
    page.click(".tabs button[data-view='users']")
    page.wait_for_selector("#u-name")
    page.fill("#u-name", "canbo-moi")
    page.fill("#u-password", "mat-khau-du-dai-1")
    page.select_option("#u-role", "viewer")
    page.fill("#u-scope", WARD)
    page.click("#side button[type=submit]")
    page.wait_for_selector("#list td:has-text('canbo-moi')")
    page.screenshot(path=shots / "17-admin-users.png")
    assert page.errors == []
