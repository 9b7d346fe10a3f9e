"""Database tables: the versioned grid hierarchy and the people and places inside it."""

from __future__ import annotations

import datetime as dt

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gis.codes import SQL_PATTERNS, GridLevel

STAFF_ROLES = ("grid_leader", "grid_member", "party_household", "supervisor")

_code_rule = " OR ".join(
    f"(level = {int(lvl)} AND code ~ '{pattern}')" for lvl, pattern in SQL_PATTERNS.items()
)


class Base(DeclarativeBase):
    pass


class Grid(Base):
    """One version of one grid. A redraw closes the current version (valid_to) and adds a new one."""

    __tablename__ = "grid"
    __table_args__ = (
        CheckConstraint("level BETWEEN 1 AND 4", name="level_range"),
        CheckConstraint("(level = 1) = (parent_code IS NULL)", name="parent_iff_not_town"),
        CheckConstraint(_code_rule, name="code_fits_level"),
        CheckConstraint(
            "parent_code IS NULL OR left(parent_code, 9) = left(code, 9)", name="parent_same_township"
        ),
        CheckConstraint(
            "level <> 4 OR parent_code = left(code, 12) || '000'", name="group_parent_is_its_village"
        ),
        CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name="geom_valid"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity_period"),
        Index("grid_current_code", "code", unique=True, postgresql_where=text("valid_to IS NULL")),
        Index("grid_current_parent", "parent_code", postgresql_where=text("valid_to IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(15))
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(SmallInteger)
    parent_code: Mapped[str | None] = mapped_column(String(15))
    geom: Mapped[WKBElement] = mapped_column(Geometry("MULTIPOLYGON", srid=4326))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    valid_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(Text)

    @property
    def grid_level(self) -> GridLevel:
        return GridLevel(self.level)


class Staff(Base):
    """A named, reachable person with a fixed duty in one grid (定格定岗定责)."""

    __tablename__ = "staff"
    __table_args__ = (
        CheckConstraint(
            "role IN (" + ", ".join(f"'{r}'" for r in STAFF_ROLES) + ")", name="known_role"
        ),
        CheckConstraint("phone IS NULL OR phone ~ '^[0-9+-]{5,20}$'", name="phone_digits"),
        Index("staff_grid", "grid_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20))
    grid_code: Mapped[str] = mapped_column(String(15))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("household.id", ondelete="SET NULL"))


class NaturalVillage(Base):
    """A settlement (自然村) inside an administrative village."""

    __tablename__ = "natural_village"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    village_code: Mapped[str] = mapped_column(String(15), index=True)
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326))


class Household(Base):
    __tablename__ = "household"
    __table_args__ = (
        CheckConstraint("residents >= 1", name="has_residents"),
        CheckConstraint(
            "least(elderly, children, disabled, pregnant, bedridden) >= 0 AND "
            "greatest(elderly, children, disabled, pregnant, bedridden) <= residents",
            name="vulnerable_counts_fit",
        ),
        CheckConstraint("floors BETWEEN 1 AND 10", name="floors_range"),
        CheckConstraint(
            "ST_X(geom) BETWEEN -180 AND 180 AND ST_Y(geom) BETWEEN -90 AND 90", name="lonlat_range"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_no: Mapped[str] = mapped_column(String(32), unique=True)
    address: Mapped[str] = mapped_column(Text)
    head_name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))
    residents: Mapped[int] = mapped_column(Integer)
    elderly: Mapped[int] = mapped_column(Integer, default=0)
    children: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[int] = mapped_column(Integer, default=0)
    pregnant: Mapped[int] = mapped_column(Integer, default=0)
    bedridden: Mapped[int] = mapped_column(Integer, default=0)
    floors: Mapped[int] = mapped_column(SmallInteger, default=1)
    natural_village_id: Mapped[int | None] = mapped_column(
        ForeignKey("natural_village.id", ondelete="SET NULL"), index=True
    )
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326))


class Resident(Base):
    __tablename__ = "resident"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_id: Mapped[int] = mapped_column(
        ForeignKey("household.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    gender: Mapped[str | None] = mapped_column(String(2))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    id_number: Mapped[str | None] = mapped_column(String(18))
    relation_to_head: Mapped[str | None] = mapped_column(String(8))
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_pregnant: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bedridden: Mapped[bool] = mapped_column(Boolean, default=False)


class Shelter(Base):
    __tablename__ = "shelter"
    __table_args__ = (CheckConstraint("capacity > 0", name="capacity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    capacity: Mapped[int] = mapped_column(Integer)
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326))


class Road(Base):
    __tablename__ = "road"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    road_class: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[WKBElement] = mapped_column(Geometry("LINESTRING", srid=4326))


class River(Base):
    __tablename__ = "river"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[WKBElement] = mapped_column(Geometry("LINESTRING", srid=4326))


class DatasetInfo(Base):
    """Facts about what is loaded: e.g. that the town is the synthetic sample, where its DEM lies."""

    __tablename__ = "dataset_info"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[dict] = mapped_column(JSONB)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FloodDataVersion(Base):
    """One row: a counter bumped by every statement that changes the flood finder's inputs."""

    __tablename__ = "flood_data_version"
    __table_args__ = (CheckConstraint("one", name="flood_data_version_one_check"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    version: Mapped[int] = mapped_column(BigInteger)


class FloodAnswer(Base):
    """The finder's stored answer for one extent and buffer: the shelters' loads and the data version."""

    __tablename__ = "flood_answer"

    extent_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("flood_extent.id", ondelete="CASCADE"), primary_key=True
    )
    buffer_m: Mapped[float] = mapped_column(Float, primary_key=True)
    data_version: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    shelter_method: Mapped[str | None] = mapped_column(Text)
    distance_kind: Mapped[str | None] = mapped_column(Text)
    shelters: Mapped[list] = mapped_column(JSONB)
    totals: Mapped[dict] = mapped_column(JSONB)  # over every household: what a reader who sees all gets


class FloodAnswerHousehold(Base):
    """One flooded household of a stored answer, in rescue order, unmasked (masked when read)."""

    __tablename__ = "flood_answer_household"
    __table_args__ = (
        ForeignKeyConstraint(
            ["extent_id", "buffer_m"], ["flood_answer.extent_id", "flood_answer.buffer_m"], ondelete="CASCADE"
        ),
    )

    extent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    buffer_m: Mapped[float] = mapped_column(Float, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(BigInteger)
    group_code: Mapped[str | None] = mapped_column(String(15))
    village_code: Mapped[str | None] = mapped_column(String(15))
    area_code: Mapped[str | None] = mapped_column(String(15))
    unplaced: Mapped[bool] = mapped_column(Boolean)
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    row: Mapped[dict] = mapped_column(JSON)
