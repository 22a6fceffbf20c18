"""The parcels collection offered to the OGC API – Features door (public: never any holder data)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from saola.core.errors import NotFound
from saola.core.units.service import normalize_code
from saola.domains.land import service
from saola.domains.land.spatial import ParcelFilter
from saola.packs.definitions import FeatureCollectionProvider, FeaturePage, FeatureQuery

QUERYABLES = {"commune_code": "string", "sheet_no": "integer", "parcel_no": "integer", "land_use": "string",
              "allowed_use": "string"}


def _items(session: Session, query: FeatureQuery) -> FeaturePage:
    props = query.properties
    commune = props.get("commune_code")
    where = ParcelFilter(
        unit_codes=frozenset({normalize_code(commune)}) if commune is not None else None,
        sheet_no=props.get("sheet_no"),
        parcel_no=props.get("parcel_no"),
        primary_use=str(props["land_use"]).upper() if "land_use" in props else None,
        allowed_use=str(props["allowed_use"]).upper() if "allowed_use" in props else None,
    )
    total, ids = service.search(session, actor=None, bbox=query.bbox, where=where, limit=query.limit,
                                offset=query.offset)
    return FeaturePage(number_matched=total, features=service.public_features(session, ids))


def _item(session: Session, feature_id: str) -> dict[str, Any] | None:
    try:
        parcel_id = uuid.UUID(feature_id)
    except ValueError:
        return None
    try:
        return service.feature(service.get_by_id(session, actor=None, parcel_id=parcel_id))
    except NotFound:
        return None


PARCELS = FeatureCollectionProvider(
    id="parcels",
    title="Thửa đất / Cadastral parcels",
    description="Thửa đất địa chính với loại đất và chỉ tiêu quy hoạch (không có thông tin chủ sử dụng) / "
                "cadastral parcels with land use and planning attributes (no holder data)",
    items=_items,
    item=_item,
    extent=service.extent,
    queryables=QUERYABLES,
    keywords=("đất đai", "thửa đất", "land", "cadastre", "planning"),
)
