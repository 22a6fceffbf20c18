"""The public CAP door: /cap/alerts.atom (Atom feed) and /cap/{identifier}.xml (one CAP 1.2 message)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from saola.core.alerts import service
from saola.db.types import utcnow
from saola.deps import SessionDep, SettingsDep
from saola.interop.cap.render import ATOM_MEDIA_TYPE, CAP_MEDIA_TYPE, alert_xml, atom_feed

router = APIRouter(prefix="/cap", tags=["cap"])
FEED_SIZE = 100


@router.get("/alerts.atom", summary="Public warnings (Atom feed of CAP 1.2 messages)",
            response_class=Response,
            responses={200: {"content": {ATOM_MEDIA_TYPE: {"schema": {"type": "string", "format": "xml"}}},
                             "description": "An Atom 1.0 feed; each entry embeds a CAP 1.2 <alert>"}})
def feed(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The newest message of each published alert, each entry embedding its CAP <alert>; no login needed."""
    items = service.public_feed(session, limit=FEED_SIZE)
    body = atom_feed(items, base_url=str(request.base_url), node_id=settings.node_id, updated=utcnow())
    return Response(body, media_type=ATOM_MEDIA_TYPE, headers={"Cache-Control": "public, max-age=30"})


@router.get("/{identifier}.xml", summary="One public warning as CAP 1.2 XML",
            response_class=Response,
            responses={200: {"content": {CAP_MEDIA_TYPE: {"schema": {"type": "string", "format": "xml"}}},
                             "description": "An OASIS CAP 1.2 <alert>"}})
def message(session: SessionDep,
            identifier: str = Path(min_length=1, max_length=160, pattern=r"^[^\s,&<]+$")) -> Response:
    """A published CAP message by identifier; 404 for anything not published."""
    publication = service.public_message(session, identifier=identifier)
    return Response(alert_xml(publication), media_type=CAP_MEDIA_TYPE,
                    headers={"Cache-Control": "public, max-age=300"})
