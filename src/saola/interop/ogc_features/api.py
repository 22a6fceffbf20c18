"""OGC API – Features, Part 1 (core, GeoJSON) under /ogc, serving every collection packs offer through a hook.

Query parameters are parsed here rather than by FastAPI so that bad ones get the standard's 400 answer
(an exception document with code and description) instead of FastAPI's 422.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from saola.core.errors import DomainError
from saola.deps import SessionDep
from saola.interop.ogc_features.schemas import (
    Collection,
    Collections,
    Conformance,
    Feature,
    FeatureCollection,
    GeoJSONResponse,
    LandingPage,
)
from saola.packs.definitions import FeatureCollectionProvider, FeatureQuery

router = APIRouter(prefix="/ogc", tags=["OGC API – Features"])

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
GEOJSON = "application/geo+json"
JSON = "application/json"
STANDARD_PARAMS = {"limit", "offset", "bbox", "bbox-crs", "datetime", "f"}


class OGCError(Exception):
    """An error answered as the standard's exception document."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description

    def response(self) -> JSONResponse:
        """The JSON answer."""
        return JSONResponse({"code": self.code, "description": self.description}, status_code=self.status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _providers(request: Request) -> dict[str, FeatureCollectionProvider]:
    groups = request.app.state.plugin_manager.hook.saola_feature_collections()
    return {p.id: p for group in groups for p in group or []}


def _provider(request: Request, collection_id: str) -> FeatureCollectionProvider:
    provider = _providers(request).get(collection_id)
    if provider is None:
        raise OGCError(404, "NotFound", f"no collection {collection_id!r}")
    return provider


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("f")
    if fmt is not None and fmt.lower() not in ("json", "geojson"):
        raise OGCError(400, "InvalidParameterValue", f"f={fmt!r} is not offered; use f=json")


def _json(body: dict[str, Any], media_type: str = JSON) -> Response:
    return JSONResponse(body, media_type=media_type)


def _answer(func):  # type: ignore[no-untyped-def]
    """Turn OGCError and domain errors raised inside a route into the standard's exception documents."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return func(*args, **kwargs)
        except OGCError as exc:
            return exc.response()
        except DomainError as exc:
            status = 400 if exc.status_code in (400, 422) else exc.status_code
            code = {400: "InvalidParameterValue", 404: "NotFound"}.get(status, exc.code)
            return OGCError(status, code, exc.message).response()

    return wrapper


@router.get("", include_in_schema=False)
@router.get("/", summary="Landing page", response_model=LandingPage)
@_answer
def landing(request: Request) -> Response:
    """Links to the API description, the conformance classes and the collections."""
    _check_format(request)
    base = _base(request)
    root = str(request.base_url).rstrip("/")
    return _json({
        "title": "Saola IOC — OGC API – Features",
        "description": "Dữ liệu không gian của Trung tâm giám sát, điều hành / spatial data of the operations center",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": JSON, "title": "this document"},
            {"href": f"{root}/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "the API definition"},
            {"href": f"{root}/docs", "rel": "service-doc", "type": "text/html", "title": "the API documentation"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": JSON, "title": "conformance classes"},
            {"href": f"{base}/collections", "rel": "data", "type": JSON, "title": "the collections"},
        ],
    })


@router.get("/conformance", summary="Conformance classes", response_model=Conformance)
@_answer
def conformance(request: Request) -> Response:
    """The conformance classes this door implements."""
    _check_format(request)
    return _json({"conformsTo": CONFORMANCE})


def _collection(request: Request, session: Session, provider: FeatureCollectionProvider) -> dict[str, Any]:
    base = f"{_base(request)}/collections/{provider.id}"
    doc: dict[str, Any] = {
        "id": provider.id,
        "title": provider.title,
        "description": provider.description,
        "itemType": "feature",
        "keywords": list(provider.keywords),
        "crs": [CRS84],
        "storageCrs": CRS84,
        "links": [
            {"href": base, "rel": "self", "type": JSON, "title": "this collection"},
            {"href": f"{base}/items", "rel": "items", "type": GEOJSON, "title": "the features"},
            {"href": f"{base}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "properties usable as filters"},
        ],
    }
    extent = provider.extent(session)
    if extent is not None:
        doc["extent"] = {"spatial": {"bbox": [list(extent)], "crs": CRS84}}
    return doc


@router.get("/collections", summary="The collections", response_model=Collections)
@_answer
def collections(request: Request, session: SessionDep) -> Response:
    """Every collection offered by the loaded packs."""
    _check_format(request)
    base = _base(request)
    return _json({
        "links": [{"href": f"{base}/collections", "rel": "self", "type": JSON, "title": "this document"}],
        "collections": [_collection(request, session, p) for p in _providers(request).values()],
    })


@router.get("/collections/{collection_id}", summary="One collection", response_model=Collection)
@_answer
def collection(collection_id: str, request: Request, session: SessionDep) -> Response:
    """A collection's description, extent and links."""
    _check_format(request)
    return _json(_collection(request, session, _provider(request, collection_id)))


@router.get("/collections/{collection_id}/queryables", summary="Queryable properties",
            response_model=dict[str, Any])
@_answer
def queryables(collection_id: str, request: Request) -> Response:
    """The properties usable as filters on the items, as a JSON Schema."""
    provider = _provider(request, collection_id)
    base = f"{_base(request)}/collections/{provider.id}"
    return _json({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{base}/queryables",
        "type": "object",
        "title": provider.title,
        "properties": {name: {"type": kind, "title": name} for name, kind in provider.queryables.items()},
    }, "application/schema+json")


def _int_param(request: Request, name: str, default: int, low: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OGCError(400, "InvalidParameterValue", f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise OGCError(400, "InvalidParameterValue", f"{name} must be at least {low}, got {value}")
    return value


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    """minlon,minlat,maxlon,maxlat (or the 6-number 3D form) in CRS84; OGCError 400 when malformed."""
    try:
        numbers = [float(v) for v in raw.split(",")]
    except ValueError:
        raise OGCError(400, "InvalidParameterValue", f"bbox must be 4 or 6 numbers, got {raw!r}") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise OGCError(400, "InvalidParameterValue", f"bbox must be 4 or 6 finite numbers, got {raw!r}")
    x0, y0, x1, y1 = numbers
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise OGCError(400, "InvalidParameterValue", "bbox values are outside lon [-180, 180], lat [-90, 90]")
    if y0 > y1 or x0 > x1:
        raise OGCError(400, "InvalidParameterValue",
                       "bbox must be minlon,minlat,maxlon,maxlat (boxes across the antimeridian are not supported)")
    return x0, y0, x1, y1


def _properties(request: Request, provider: FeatureCollectionProvider) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in request.query_params.items():
        if name in STANDARD_PARAMS:
            continue
        kind = provider.queryables.get(name)
        if kind is None:
            known = ", ".join(sorted(STANDARD_PARAMS | set(provider.queryables)))
            raise OGCError(400, "InvalidParameterValue", f"unknown parameter {name!r}; known: {known}")
        try:
            out[name] = int(raw) if kind == "integer" else float(raw) if kind == "number" else raw
        except ValueError:
            raise OGCError(400, "InvalidParameterValue", f"{name} must be of type {kind}, got {raw!r}") from None
    return out


def _link(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in changes.items()})
    return str(request.url.replace_query_params(**params))


@router.get("/collections/{collection_id}/items", summary="Features of a collection",
            response_model=FeatureCollection, response_class=GeoJSONResponse)
@_answer
def items(collection_id: str, request: Request, session: SessionDep) -> Response:
    """Features filtered by bbox (real geometry, a zero-size box is a point) and properties, paged."""
    provider = _provider(request, collection_id)
    _check_format(request)
    crs = request.query_params.get("bbox-crs")
    if crs is not None and crs != CRS84:
        raise OGCError(400, "InvalidParameterValue", f"bbox-crs {crs!r} is not offered; use {CRS84}")
    limit = min(_int_param(request, "limit", provider.default_limit, 1), provider.max_limit)
    offset = _int_param(request, "offset", 0, 0)
    raw_bbox = request.query_params.get("bbox")
    bbox = parse_bbox(raw_bbox) if raw_bbox is not None else None
    query = FeatureQuery(limit=limit, offset=offset, bbox=bbox, properties=_properties(request, provider))
    page = provider.items(session, query)
    base = f"{_base(request)}/collections/{provider.id}"
    links = [{"href": _link(request), "rel": "self", "type": GEOJSON, "title": "this page"},
             {"href": base, "rel": "collection", "type": JSON, "title": "the collection"}]
    if offset + len(page.features) < page.number_matched:
        links.append({"href": _link(request, offset=offset + limit, limit=limit), "rel": "next", "type": GEOJSON,
                      "title": "next page"})
    if offset > 0:
        links.append({"href": _link(request, offset=max(0, offset - limit), limit=limit), "rel": "prev",
                      "type": GEOJSON, "title": "previous page"})
    return _json({
        "type": "FeatureCollection",
        "features": page.features,
        "numberMatched": page.number_matched,
        "numberReturned": len(page.features),
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "links": links,
    }, GEOJSON)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature", response_model=Feature,
            response_class=GeoJSONResponse)
@_answer
def item(collection_id: str, feature_id: str, request: Request, session: SessionDep) -> Response:
    """A single feature by id."""
    provider = _provider(request, collection_id)
    _check_format(request)
    found = provider.item(session, feature_id)
    if found is None:
        raise OGCError(404, "NotFound", f"no feature {feature_id!r} in collection {collection_id!r}")
    base = f"{_base(request)}/collections/{provider.id}"
    body = {**found, "links": [
        {"href": f"{base}/items/{feature_id}", "rel": "self", "type": GEOJSON, "title": "this feature"},
        {"href": base, "rel": "collection", "type": JSON, "title": "the collection"},
    ]}
    return _json(body, GEOJSON)
