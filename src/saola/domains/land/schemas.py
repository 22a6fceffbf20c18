"""Request and response models of the land pack.

Public answers use ParcelPublic, which has no field for holder data at all; ParcelDetail adds the holder for
callers allowed to see it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class UnitRef(BaseModel):
    """A commune or province by code and name."""

    code: str
    name: str


class LandUseRead(BaseModel):
    """One land use of a parcel with its Vietnamese and English names and its area."""

    code: str
    name_vi: str
    name_en: str
    area_m2: float | None = None


class PlanningRead(BaseModel):
    """Planning attributes: allowed use, building density, floors, land-use coefficient, setback."""

    allowed_use: str | None = None
    allowed_use_name_vi: str | None = None
    allowed_use_name_en: str | None = None
    building_density_pct: float | None = Field(default=None, description="Mật độ xây dựng (%)")
    floors_min: int | None = Field(default=None, description="Tầng cao tối thiểu")
    floors_max: int | None = Field(default=None, description="Tầng cao tối đa")
    land_use_coefficient: float | None = Field(default=None, description="Hệ số sử dụng đất")
    setback_m: float | None = Field(default=None, description="Khoảng lùi (m)")


class ParcelPublic(BaseModel):
    """What anyone may know about a parcel: where it lies, its area, its uses and its planning."""

    id: str
    commune: UnitRef
    province: UnitRef | None
    sheet_no: int = Field(description="Số tờ bản đồ")
    parcel_no: int = Field(description="Số thửa")
    area_m2: float
    primary_use: str
    land_use: list[LandUseRead]
    planning: PlanningRead
    label_point: tuple[float, float] = Field(description="A point inside the parcel [lon, lat]")
    bbox: tuple[float, float, float, float]
    geometry: dict[str, Any] | None = None
    updated_at: datetime


class HolderRead(BaseModel):
    """Holder and certificate data: personal data."""

    holder_name: str | None = None
    certificate_no: str | None = None
    certificate_issued_on: date | None = None


class ParcelDetail(ParcelPublic):
    """A parcel as seen by a signed-in caller; holder is filled only with 'land:private:read' inside scope."""

    holder: HolderRead | None = None


class LookupPublic(BaseModel):
    """The parcels at a point (two or more on a shared edge; none between parcels), and neighbours if asked."""

    lon: float
    lat: float
    parcels: list[ParcelPublic]
    neighbours: list[ParcelPublic] | None = None


class LookupDetail(BaseModel):
    """The parcels at a point for a signed-in caller (only those inside the caller's scope)."""

    lon: float
    lat: float
    parcels: list[ParcelDetail]
    neighbours: list[ParcelDetail] | None = None


class LandUseCodeRead(BaseModel):
    """An entry of the land-use code table."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    group: str
    name_vi: str
    name_en: str
    status: str


class ImportIssueRead(BaseModel):
    """A row the import repaired or rejected, and why."""

    row: int
    key: str | None
    reason: str


class ImportReportRead(BaseModel):
    """What an import did."""

    file: str
    layer: str | None
    crs: str
    rows: int
    created: int
    updated: int
    repaired: list[ImportIssueRead]
    rejected: list[ImportIssueRead]
    seconds: float
