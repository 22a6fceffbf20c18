"""The wallboard in Chromium: log in, tiles and map render, a value changes live through SSE, drill down."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from saola.db.types import utcnow
from tests.web.conftest import PASSWORD, PROVINCE, WARD2, LiveServer, login


def test_login_wallboard_live_and_drill_down(page: Any, live_server: LiveServer, shots: Path) -> None:
    """A leader signs in, sees the packs' tiles and layers, a KPI changes over SSE, drills to a ward and a station."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live_server.url + "/")
    page.wait_for_url("**/login*")  # no session yet: the front door asks who you are
    page.screenshot(path=shots / "01-login.png")
    login(page, live_server, "lanhdao")
    page.wait_for_selector("[data-panel='socioeconomic'] .kpi")
    page.wait_for_selector(f"#feed li:has-text('{live_server.alert_title}')")
    assert "Lâm Đồng" in page.locator("#crumbs .here").inner_text()
    growth = page.locator("[data-indicator='kt.grdp_growth']").first
    assert growth.locator(".value").inner_text().startswith("7,5")  # the last month's 7.5 %, Vietnamese format
    assert growth.get_attribute("data-status") == "warning"  # 7.5 of a target of 8: 94 %
    page.wait_for_selector("#live[data-state='on']")
    page.wait_for_selector("#layers label[data-layer='environment.stations'][data-count='4']")
    page.screenshot(path=shots / "02-wallboard.png")

    # A new reading arrives through the API: the open stream carries it and the tile shows it without a reload.
    token = live_server.token("quantri")
    r = httpx.post(f"{live_server.url}/api/observations", headers={"Authorization": f"Bearer {token}"},
                   json={"items": [{"indicator": "kt.grdp_growth", "unit": PROVINCE, "ts": utcnow().isoformat(),
                                    "value": 8.4}]})
    assert r.status_code == 200, r.text
    expect(page.locator("[data-indicator='kt.grdp_growth'] .value").first).to_have_text(re.compile(r"^8,4"))
    assert page.locator("[data-indicator='kt.grdp_growth']").first.get_attribute("data-status") == "good"
    page.screenshot(path=shots / "03-wallboard-live-update.png")

    # Province -> commune: the ward's own figures (its parcels), the province in the breadcrumbs.
    page.select_option("#commune", WARD2)
    page.wait_for_selector(f"body[data-unit='{WARD2}']")
    assert "Cam Ly" in page.locator("#crumbs .here").inner_text()
    assert page.locator("[data-indicator='land.parcels'] .value").first.inner_text().startswith("3.900")
    page.screenshot(path=shots / "04-drill-commune.png")

    # Domain -> entity: the air tile lists the ward's stations; one click opens the station.
    page.click("[data-panel='environment.aqi']")
    page.wait_for_selector("#drawer:not(.hidden) button:has-text('Trạm Cam Ly')")
    page.click("#drawer button:has-text('Trạm Cam Ly')")
    page.wait_for_selector("#drawer-title:has-text('Trạm Cam Ly')")
    page.screenshot(path=shots / "05-drill-station.png")
    page.keyboard.press("Escape")
    page.click(f"#crumbs button[data-unit='{PROVINCE}']")
    page.wait_for_selector(f"body[data-unit='{PROVINCE}']")

    # Every request stayed on the server itself: no CDN, no tiles from elsewhere.
    assert requests and all(u.startswith(live_server.url) for u in requests), [
        u for u in requests if not u.startswith(live_server.url)]
    assert page.errors == []


def test_english_switch_and_keyboard(page: Any, live_server: LiveServer, shots: Path) -> None:
    """The English switch relabels the page and stays chosen; tiles open from the keyboard; ?next= stays here."""
    page.goto(f"{live_server.url}/login?next=//evil.example/steal")
    page.fill("#username", "lanhdao")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{live_server.url}/wallboard")  # never to another site after signing in
    page.wait_for_selector("[data-panel='socioeconomic'] .kpi")
    assert page.locator("html").get_attribute("lang") == "vi"
    page.click(".lang button[data-lang='en']")
    assert page.locator(".nav a[data-page='console']").inner_text() == "Console"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#layers label[data-layer='core.incidents']").inner_text().strip() == "Open incidents"
    page.focus("[data-panel='socioeconomic']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#drawer:not(.hidden)")
    assert page.locator("#drawer-title").inner_text() == "Socio-economy"
    page.screenshot(path=shots / "06-wallboard-english.png")
    page.reload()
    page.wait_for_selector("[data-panel='socioeconomic'] .kpi")
    assert page.locator(".nav a[data-page='console']").inner_text() == "Console"
    page.click(".lang button[data-lang='vi']")
    assert page.errors == []
