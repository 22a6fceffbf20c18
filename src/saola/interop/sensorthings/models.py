"""Tables of the SensorThings door: only the mapping onto the kernel, never a second store of readings.

Things, Locations and FeaturesOfInterest are kernel entities; ObservedProperties are kernel indicators;
Observations are rows of the kernel's observations table. These tables hold what the kernel has no place for:
Datastreams (a Thing and an indicator, with STA metadata), Sensors, the STA metadata of ObservedProperties,
the Thing-Location links and the HistoricalLocations.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class StaSensor(NodeMixin, TimestampMixin, Base):
    """A Sensor: the description of an instrument or procedure (metadata only, no unit scope)."""

    __tablename__ = "sta_sensors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(2000), default="")
    encoding_type: Mapped[str] = mapped_column(String(120), default="")
    metadata_: Mapped[str] = mapped_column("metadata", Text, default="")
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class StaObservedProperty(Base):
    """The STA side of an indicator used as an ObservedProperty: its definition URI and free properties."""

    __tablename__ = "sta_observed_properties"

    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"), primary_key=True)
    definition: Mapped[str] = mapped_column(String(500))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class StaDatastream(NodeMixin, TimestampMixin, Base):
    """A Datastream: the readings of one indicator about one Thing entity.

    (thing_id, indicator_id) is unique because the kernel keys readings by (indicator, subject): two
    Datastreams of one Thing and one property would share their readings.
    """

    __tablename__ = "sta_datastreams"
    __table_args__ = (
        UniqueConstraint("thing_id", "indicator_id"),
        Index("ix_sta_datastreams_indicator", "indicator_id"),
        Index("ix_sta_datastreams_sensor", "sensor_id"),
        Index("ix_sta_datastreams_feature", "feature_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thing_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id"))
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"))
    sensor_id: Mapped[int] = mapped_column(ForeignKey("sta_sensors.id"))
    feature_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("entities.id"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(2000), default="")
    observation_type: Mapped[str] = mapped_column(String(200))
    unit_of_measurement: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class StaThingLocation(Base):
    """A Thing's current Location (a Thing may have several, one per encoding)."""

    __tablename__ = "sta_thing_locations"
    __table_args__ = (Index("ix_sta_thing_locations_location", "location_id"),)

    thing_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id"), primary_key=True)
    location_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id"), primary_key=True)


class StaHistoricalLocation(Base):
    """When a Thing was put at its Locations (written each time its Locations change)."""

    __tablename__ = "sta_historical_locations"
    __table_args__ = (Index("ix_sta_historical_locations_thing", "thing_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thing_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id"))
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaHistoricalLocationLocation(Base):
    """The Locations of one HistoricalLocation."""

    __tablename__ = "sta_hl_locations"
    __table_args__ = (Index("ix_sta_hl_locations_location", "location_id"),)

    hl_id: Mapped[int] = mapped_column(ForeignKey("sta_historical_locations.id"), primary_key=True)
    location_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id"), primary_key=True)
