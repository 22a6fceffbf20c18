"""The page shells and assets, over plain HTTP: served from the package, no third-party origin, configuration."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

from fastapi.testclient import TestClient

from saola.app import create_app
from saola.config import Settings

WEB = Path(__file__).resolve().parents[2] / "src" / "saola" / "web"
PAGES = ("/wallboard", "/console", "/portal", "/admin", "/login")


def _config(html: str) -> dict:
    match = re.search(r'data-config="([^"]*)"', html)
    assert match, "the page carries its configuration"
    return json.loads(unescape(match.group(1)))


def test_front_door_and_pages(client: TestClient) -> None:
    """/ leads to the wallboard; every page is Vietnamese by default and forbids scripts from elsewhere."""
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/wallboard"
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert '<html lang="vi">' in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'self'" in csp
        assert _config(r.text)["timezone"] == "Asia/Ho_Chi_Minh"


def test_every_asset_a_page_names_is_served(client: TestClient) -> None:
    """Scripts, styles, fonts and images named by the pages (and the font faces) come from /static."""
    names: set[str] = set()
    for path in PAGES:
        names |= set(re.findall(r'(?:src|href)="(/static/[^"?]+)', client.get(path).text))
    css = client.get("/static/vendor/fonts/be-vietnam-pro.css").text
    names |= {"/static/vendor/fonts/" + f.lstrip("./") for f in re.findall(r"url\((\./[^)]+\.woff2)\)", css)}
    assert any(n.endswith("leaflet.js") for n in names) and any(n.endswith("echarts.min.js") for n in names)
    assert any("vietnamese" in n for n in names)
    for name in sorted(names):
        r = client.get(name)
        assert r.status_code == 200 and r.content, name
    modules = {p.name for p in (WEB / "static" / "js").glob("*.js")}
    for module in modules:
        assert client.get(f"/static/js/{module}").status_code == 200


def test_our_code_names_no_other_origin() -> None:
    """Our templates, scripts and styles load nothing from a CDN (the vendored libraries are checked in CI by use)."""
    ours = [*(WEB / "templates").glob("*.html"), *(WEB / "static" / "js").glob("*.js"),
            *(WEB / "static" / "css").glob("*.css")]
    assert len(ours) >= 10
    for path in ours:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text), path


def test_tile_source_is_configurable(settings: Settings) -> None:
    """The map's tile source comes from SAOLA_WEB_TILE_URL; by default none (vector layers on a plain ground)."""
    with TestClient(create_app(settings)) as plain:
        assert _config(plain.get("/wallboard").text)["tileUrl"] == ""
    tiled = settings.model_copy(update={"web_tile_url": "http://tiles.tinh.local/{z}/{x}/{y}.png",
                                        "web_tile_attribution": "Sở NN&MT"})
    with TestClient(create_app(tiled)) as c:
        config = _config(c.get("/portal").text)
    assert config["tileUrl"] == "http://tiles.tinh.local/{z}/{x}/{y}.png" and config["tileAttribution"] == "Sở NN&MT"
