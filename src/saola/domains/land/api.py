"""Routes of the land pack: scoped lookups and imports under /api/land, citizen lookups under /api/public/land."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from saola.core.errors import FieldError, ValidationFailed
from saola.deps import ActorDep, SessionDep
from saola.domains.land import importer, service
from saola.domains.land.codes import land_use_codes
from saola.domains.land.schemas import (
    ImportReportRead,
    LandUseCodeRead,
    LookupDetail,
    LookupPublic,
    ParcelDetail,
    ParcelPublic,
)

router = APIRouter(prefix="/api/land", tags=["land"])
public_router = APIRouter(prefix="/api/public/land", tags=["land (public)"])

Lon = Annotated[float, Query(ge=-180, le=180, description="Kinh độ / longitude (WGS84)")]
Lat = Annotated[float, Query(ge=-90, le=90, description="Vĩ độ / latitude (WGS84)")]
Neighbours = Annotated[bool, Query(description="Also return the parcels touching it")]
WithGeometry = Annotated[bool, Query(description="Include the parcel's GeoJSON geometry")]
UPLOAD_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")


@router.get("/lookup", response_model=LookupDetail, summary="Parcels at a point (inside the caller's scope)")
def lookup(session: SessionDep, actor: ActorDep, lon: Lon, lat: Lat, neighbours: Neighbours = False,
           geometry: WithGeometry = True) -> dict:
    """What lies at this point: parcels with uses and planning; holder data with 'land:private:read'."""
    return service.lookup_point(session, actor=actor, lon=lon, lat=lat, neighbours=neighbours, geometry=geometry)


@router.get("/parcels/{parcel_id}", response_model=ParcelDetail, summary="One parcel by id")
def parcel_by_id(parcel_id: uuid.UUID, session: SessionDep, actor: ActorDep, geometry: WithGeometry = True) -> dict:
    """A parcel inside the caller's scope."""
    return service.get_by_id(session, actor=actor, parcel_id=parcel_id, geometry=geometry)


@router.get("/parcels/{commune}/{sheet_no}/{parcel_no}", response_model=ParcelDetail,
            summary="One parcel by commune, sheet and parcel number")
def parcel_by_key(commune: str, sheet_no: int, parcel_no: int, session: SessionDep, actor: ActorDep,
                  geometry: WithGeometry = True) -> dict:
    """A parcel inside the caller's scope, by its cadastral key."""
    return service.get_by_key(session, actor=actor, commune=commune, sheet_no=sheet_no, parcel_no=parcel_no,
                              geometry=geometry)


@router.post("/imports", response_model=ImportReportRead, summary="Import parcels from a file")
def import_file(
    session: SessionDep,
    actor: ActorDep,
    file: Annotated[UploadFile, File(description="GeoJSON, GeoPackage, or a zipped Shapefile")],
    crs: Annotated[str | None, Form(description="EPSG:4326, VN2000:107.75, a PROJ string; default: the file's")]
    = None,
    mapping: Annotated[str | None, Form(description='JSON {"sheet_no": "SoTo", ...}')] = None,
    commune: Annotated[str | None, Form(max_length=16)] = None,
    layer: Annotated[str | None, Form(max_length=120)] = None,
    strict: Annotated[bool, Form(description="Reject the whole file when any row is rejected")] = False,
) -> dict:
    """Check, reproject and write one file in one transaction; the report lists repaired and rejected rows."""
    actor.require("land:write")
    name = Path(file.filename or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ValidationFailed(f"unsupported file type {suffix!r}",
                               [FieldError(["body", "file"], f"expected one of {', '.join(UPLOAD_SUFFIXES)}")])
    try:
        fields = json.loads(mapping) if mapping else None
    except ValueError:
        raise ValidationFailed("mapping is not JSON", [FieldError(["body", "mapping"], "invalid JSON")]) from None
    if fields is not None and not (isinstance(fields, dict) and all(isinstance(v, str) for v in fields.values())):
        raise ValidationFailed("mapping must be an object of strings",
                               [FieldError(["body", "mapping"], "expected {ours: theirs}")])
    with tempfile.TemporaryDirectory(prefix="saola-land-") as tmp:
        target = Path(tmp) / (re.sub(r"[^\w.-]", "_", Path(name).stem) + suffix)
        with target.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        report = importer.import_parcels(session, actor=actor, path=target, crs=crs, mapping=fields,
                                         commune=commune, layer=layer, strict=strict)
    report.file = name
    return report.as_dict()


@public_router.get("/lookup", response_model=LookupPublic, summary="Tra cứu thửa đất tại một điểm / parcel at a point")
async def public_lookup(request: Request, lon: Lon, lat: Lat, neighbours: Neighbours = False,
                        geometry: WithGeometry = True) -> dict:
    """Where a parcel lies, its area, how it may be used and how high one may build: no personal data.

    On the embedded store the answer is a fraction of a millisecond of in-process work (STRtree and one
    SQLite read), so it runs right on the event loop instead of hopping to the thread pool and back; on
    PostgreSQL it waits on the network, so it goes to the thread pool like every other route.
    """
    factory = request.app.state.session_factory

    def answer() -> dict:
        with factory() as session, session.begin():
            return service.lookup_point(session, actor=None, lon=lon, lat=lat, neighbours=neighbours,
                                        geometry=geometry)

    if request.app.state.engine.dialect.name == "sqlite":
        return answer()
    return await run_in_threadpool(answer)


@public_router.get("/parcels/{commune}/{sheet_no}/{parcel_no}", response_model=ParcelPublic,
                   summary="Tra cứu theo số tờ, số thửa / parcel by sheet and number")
def public_parcel(commune: str, sheet_no: int, parcel_no: int, session: SessionDep,
                  geometry: WithGeometry = True) -> dict:
    """A parcel by commune code, map sheet and parcel number: no personal data."""
    return service.get_by_key(session, actor=None, commune=commune, sheet_no=sheet_no, parcel_no=parcel_no,
                              geometry=geometry)


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    """minlon,minlat,maxlon,maxlat; 422 naming query.bbox when malformed."""
    try:
        numbers = [float(v) for v in raw.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise ValidationFailed("bbox must be minlon,minlat,maxlon,maxlat",
                               [FieldError(["query", "bbox"], "expected 4 comma-separated numbers")])
    box = (numbers[0], numbers[1], numbers[2], numbers[3])
    service.check_bbox(box)
    return box


@public_router.get("/map", summary="Parcels in a box as GeoJSON, simplified for the zoom level",
                   response_class=Response, responses={200: {"content": {"application/geo+json": {"schema": {
                       "type": "object", "description": "GeoJSON FeatureCollection with numberMatched, numberReturned "
                                                       "and truncated"}}}}})
def public_map(
    session: SessionDep,
    bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat", max_length=200)],
    zoom: Annotated[int, Query(ge=0, le=22, description="Map zoom level: geometries are simplified below 19")] = 17,
    limit: Annotated[int, Query(ge=1, le=service.MAP_MAX_FEATURES)] = 5000,
) -> Response:
    """Parcels whose geometry intersects the box, for the map layer (no personal data)."""
    body = service.map_geojson(session, bbox=parse_bbox(bbox), zoom=zoom, limit=limit)
    return Response(body, media_type="application/geo+json")


@public_router.get("/use-codes", response_model=list[LandUseCodeRead], summary="Mã loại đất / land-use codes")
def use_codes() -> list[LandUseCodeRead]:
    """The land-use code table (Circular 08/2024/TT-BTNMT; labels marked unverified until checked)."""
    return [LandUseCodeRead.model_validate(c) for c in land_use_codes().values()]
