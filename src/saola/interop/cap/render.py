"""CAP 1.2 XML of a published alert, and the Atom feed that embeds the current messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from saola.core.alerts.models import AlertPublication
from saola.core.alerts.service import cap_time

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
SENDER_NAME = "Trung tâm Giám sát, điều hành thông minh (Saola IOC)"

ET.register_namespace("cap", CAP_NS)


def _num(value: float) -> str:
    """A coordinate or radius as plain decimals (no exponent), as the CAP patterns want."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _sub(parent: ET.Element, tag: str, text: str | None, ns: str = CAP_NS) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _area(info: ET.Element, area: dict[str, Any]) -> None:
    element = _sub(info, "area", None)
    _sub(element, "areaDesc", area.get("desc") or "Việt Nam")
    for ring in area.get("polygons", []):
        _sub(element, "polygon", " ".join(f"{_num(lat)},{_num(lon)}" for lat, lon in ring))
    for lat, lon, radius in area.get("circles", []):
        _sub(element, "circle", f"{_num(lat)},{_num(lon)} {_num(radius)}")
    for code in area.get("geocodes", []):
        geocode = _sub(element, "geocode", None)
        _sub(geocode, "valueName", str(code["valueName"]))
        _sub(geocode, "value", str(code["value"]))


def alert_element(publication: AlertPublication) -> ET.Element:
    """The <alert> element of one published message (elements in the order the CAP schema requires)."""
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", publication.identifier)
    _sub(alert, "sender", publication.sender)
    _sub(alert, "sent", cap_time(publication.sent))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", publication.msg_type)
    _sub(alert, "scope", "Public")
    if publication.msg_type == "Cancel":
        _sub(alert, "note", "Cảnh báo đã kết thúc / the warning has ended")
    if publication.references:
        _sub(alert, "references", publication.references)
    _sub(alert, "incidents", str(publication.alert_id))
    for block in publication.info:
        info = _sub(alert, "info", None)
        _sub(info, "language", block["language"])
        _sub(info, "category", publication.category)
        _sub(info, "event", block["event"])
        if publication.msg_type == "Cancel":
            _sub(info, "responseType", "AllClear")
        _sub(info, "urgency", publication.urgency)
        _sub(info, "severity", publication.severity)
        _sub(info, "certainty", publication.certainty)
        if publication.expires is not None:
            _sub(info, "expires", cap_time(publication.expires))
        _sub(info, "senderName", SENDER_NAME)
        _sub(info, "headline", block["headline"])
        if block.get("description"):
            _sub(info, "description", block["description"])
        if block.get("instruction"):
            _sub(info, "instruction", block["instruction"])
        if block.get("web"):
            _sub(info, "web", block["web"])
        _area(info, publication.area or {})
    return alert


def alert_xml(publication: AlertPublication) -> bytes:
    """One CAP 1.2 message as a standalone XML document."""
    return ET.tostring(alert_element(publication), encoding="utf-8", xml_declaration=True,
                       default_namespace=CAP_NS)


def _headline(publication: AlertPublication) -> str:
    return next((b["headline"] for b in publication.info if b["language"] == "vi-VN"),
                publication.info[0]["headline"] if publication.info else publication.identifier)


def atom_feed(publications: Sequence[AlertPublication], *, base_url: str, node_id: str,
              updated: datetime) -> bytes:
    """An Atom feed with one entry per published alert, each embedding its newest CAP message.

    Written as text around the serialised <alert> elements: Atom in the default namespace, each alert declaring
    the CAP namespace itself (ElementTree cannot mix a default namespace with unqualified attributes).
    """
    base = base_url.rstrip("/")
    self_url = f"{base}/cap/alerts.atom"
    newest = max((p.sent for p in publications), default=updated)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        f'<feed xmlns="{ATOM_NS}">',
        f"<id>{escape(self_url)}</id>",
        f"<title>{escape(f'Cảnh báo công khai — {node_id}')}</title>",
        f"<updated>{cap_time(newest)}</updated>",
        f"<author><name>{escape(SENDER_NAME)}</name></author>",
        f"<link rel=\"self\" type={quoteattr(ATOM_MEDIA_TYPE)} href={quoteattr(self_url)}/>",
    ]
    for publication in publications:
        url = f"{base}/cap/{publication.identifier}.xml"
        alert = ET.tostring(alert_element(publication), encoding="unicode", default_namespace=CAP_NS)
        parts += [
            "<entry>",
            f"<id>{escape(url)}</id>",
            f"<title>{escape(_headline(publication))}</title>",
            f"<updated>{cap_time(publication.sent)}</updated>",
            f"<published>{cap_time(publication.sent)}</published>",
            f"<link rel=\"alternate\" type={quoteattr(CAP_MEDIA_TYPE)} href={quoteattr(url)}/>",
            f"<content type={quoteattr(CAP_MEDIA_TYPE)}>{alert}</content>",
            "</entry>",
        ]
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")
