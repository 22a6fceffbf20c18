"""Server-rendered page shells: each page is one HTML file plus ES modules that talk to the JSON API.

No build step and no template engine: a page file has a few $placeholders (language, configuration, version)
filled with string.Template; everything else it shows comes from the API, so the pages know packs only through
the hooks' contributions (panels, layers) and the packs' HTTP routes.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from saola import __version__

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

router = APIRouter(include_in_schema=False)

# Pages: (file, Vietnamese title, English title, body class).
PAGES: dict[str, tuple[str, str, str, str]] = {
    "wallboard": ("wallboard.html", "Màn hình điều hành", "Wallboard", "theme-wall"),
    "console": ("console.html", "Bàn điều hành", "Operator console", "theme-ops"),
    "portal": ("portal.html", "Cổng phản ánh, tra cứu", "Citizen portal", "theme-portal"),
    "admin": ("admin.html", "Quản trị", "Administration", "theme-ops"),
    "login": ("login.html", "Đăng nhập", "Sign in", "theme-wall"),
}
# Browsers may only load what the package serves itself: an air-gapped IOC, and no third-party code.
CSP = ("default-src 'self'; img-src 'self' data: blob: http: https:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; font-src 'self'; frame-ancestors 'self'; base-uri 'self'")


def mount_static(app: Any) -> None:
    """Mount /static once (startup may run more than once on the same application in tests)."""
    if not any(getattr(r, "path", None) == "/static" for r in app.router.routes):
        app.mount("/static", StaticFiles(directory=STATIC), name="static")


@lru_cache(maxsize=16)
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def _client_config(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    return {"tileUrl": settings.web_tile_url, "tileAttribution": settings.web_tile_attribution,
            "center": list(settings.web_map_center), "zoom": settings.web_map_zoom, "version": __version__,
            "demo": settings.demo_mode, "timezone": settings.timezone}


def render(request: Request, page: str) -> HTMLResponse:
    """One page shell with its configuration; the language is chosen in the browser (Vietnamese by default)."""
    file, title_vi, title_en, theme = PAGES[page]
    body = _template(file).safe_substitute()
    config = json.dumps(_client_config(request), ensure_ascii=False).replace("</", "<\\/")
    text = _template("layout.html").substitute(
        title_vi=html.escape(title_vi), title_en=html.escape(title_en), theme=theme, page=page, body=body,
        config=html.escape(config, quote=True), version=__version__)
    return HTMLResponse(text, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                       "Referrer-Policy": "same-origin"})


@router.get("/")
def home() -> RedirectResponse:
    """The front door leads to the wallboard (which sends visitors without a session to the login)."""
    return RedirectResponse("/wallboard")


@router.get("/wallboard")
def wallboard(request: Request) -> HTMLResponse:
    """The big screen: tiles, map, live alert ticker, clock."""
    return render(request, "wallboard")


@router.get("/console")
def console(request: Request) -> HTMLResponse:
    """Operators: alert queue, incident board with SOP, directives, citizen-report queue."""
    return render(request, "console")


@router.get("/portal")
def portal(request: Request) -> HTMLResponse:
    """Citizens, no login: send and follow a report, look up a parcel, air quality."""
    return render(request, "portal")


@router.get("/admin")
def admin(request: Request) -> HTMLResponse:
    """Integrators and administrators: sources and keys, indicators and targets, rules, users."""
    return render(request, "admin")


@router.get("/login")
def login(request: Request) -> HTMLResponse:
    """Sign in (the token is kept in the browser's storage for this origin)."""
    return render(request, "login")
