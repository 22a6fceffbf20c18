"""Shared helpers of the case, SOP, directive and scope-matrix tests (no tests here)."""

from __future__ import annotations

import io
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import Message, get_bus
from saola.core.auth.context import Actor
from saola.core.auth.models import User
from saola.core.auth.service import actor_for_user, issue_token
from saola.core.cases.models import Case, CaseTimelineEntry
from saola.core.units.models import Agency
from saola.core.units.service import ensure_agency
from saola.db.engine import transaction
from tests.conftest import unique

PROVINCE = "68"  # Lâm Đồng
WARD_A = "24781"  # Phường Xuân Hương - Đà Lạt
WARD_B = "24787"  # Phường Cam Ly - Đà Lạt
WARD_C = "24778"  # Phường Lâm Viên - Đà Lạt
OTHER_PROVINCE = "79"  # TP Hồ Chí Minh
OTHER_WARD = "26506"  # a ward outside Lâm Đồng


@dataclass
class Person:
    """A test user: headers for the API and the Actor for services."""

    headers: dict[str, str]
    user_id: uuid.UUID
    actor: Actor
    username: str


def new_person(settings: Any, session_factory: sessionmaker[Session], permissions: dict[str, set[str]], role: str,
               scope: str, agency_id: uuid.UUID | None = None) -> Person:
    """Create a user (optionally bound to an agency) with a bearer token, and return both faces of them.

    The one way the operations tests make users (the rules, alerts and CAP tests through `headers_for`). The token
    is issued directly and the user row written without hashing a password: login and argon2 are tested in
    tests/test_auth.py, and an argon2 hash per user (what the shared `make_user` fixture does, with a login) would
    dominate these tests' run time.
    """
    username = unique("u")
    with transaction(session_factory) as session:
        user = User(username=username, password_hash="!unusable", role=role, scope_code=scope, agency_id=agency_id)
        session.add(user)
        session.flush()
        actor = actor_for_user(session, user, permissions)
        user_id = user.id
        token, _ = issue_token(settings, user)
    return Person({"Authorization": f"Bearer {token}"}, user_id, actor, username)


def make_person(client: TestClient, session_factory: sessionmaker[Session], registry: Any, role: str, scope: str,
                agency_id: uuid.UUID | None = None) -> Person:
    """A new user of the client's application (see new_person)."""
    return new_person(client.app.state.settings, session_factory, registry.permissions, role, scope,  # type: ignore[attr-defined]
                      agency_id)


def make_agency(session_factory: sessionmaker[Session], unit_code: str, *, kind: str = "department",
                parent_id: uuid.UUID | None = None, code: str | None = None) -> uuid.UUID:
    """A new agency in a unit."""
    with transaction(session_factory) as session:
        agency = ensure_agency(session, unit_code=unit_code, code=code or unique("ag"), name=f"Cơ quan {unique()}",
                               kind=kind)
        if parent_id is not None:
            agency.parent_id = parent_id
        return agency.id


def committee(session_factory: sessionmaker[Session], unit_code: str) -> uuid.UUID:
    """The People's Committee of a unit (created once)."""
    with transaction(session_factory) as session:
        found = session.scalar(select(Agency.id).where(Agency.unit_code == unit_code,
                                                       Agency.kind == "people_committee"))
        if found:
            return found
        return ensure_agency(session, unit_code=unit_code, code="ubnd", name=f"UBND {unit_code}",
                             kind="people_committee").id


@contextmanager
def bus_messages(pattern: str = "cases.*") -> Iterator[list[Message]]:
    """Collect bus messages published while the block runs."""
    seen: list[Message] = []
    unsubscribe = get_bus().subscribe(pattern, seen.append)
    try:
        yield seen
    finally:
        unsubscribe()


def counts(session_factory: sessionmaker[Session]) -> tuple[int, int]:
    """How many cases and timeline entries exist (to prove a refused request changed nothing)."""
    with session_factory() as session:
        return (session.scalar(select(func.count()).select_from(Case)) or 0,
                session.scalar(select(func.count()).select_from(CaseTimelineEntry)) or 0)


def png_bytes(width: int = 1, height: int = 1) -> bytes:
    """A real, tiny PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf_bytes(text: str = "Bao cao") -> bytes:
    """A minimal one-page PDF."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>"]
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def docx_bytes() -> bytes:
    """A minimal DOCX (an OOXML zip with a word document)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"/>')
        z.writestr("word/document.xml", '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats'
                   '.org/wordprocessingml/2006/main"><w:body/></w:document>')
    return out.getvalue()


def exe_bytes() -> bytes:
    """The start of a Windows program (MZ header)."""
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 64 + b"This program cannot"


def upload(client: TestClient, headers: dict[str, str], case_id: str, name: str, content: bytes,
           mime: str = "application/octet-stream") -> Any:
    """POST a file to a case."""
    return client.post(f"/api/cases/{case_id}/attachments", headers=headers, files={"file": (name, content, mime)})


def open_incident(client: TestClient, headers: dict[str, str], unit: str = WARD_A, **over: Any) -> dict[str, Any]:
    """Open an incident through the API and return it."""
    body = {"case_type": "incident", "title": over.pop("title", f"Sự cố {unique()}"), "unit_code": unit, **over}
    r = client.post("/api/cases", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


Maker = Callable[..., Person]
