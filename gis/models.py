"""Database tables: every table the migrations create, with its indexes and constraints.

The migrations (gis/migrations/versions) make the schema; these models say the same thing in Python,
and `wangge db check` (gis/schema_check.py) fails when the two disagree. Triggers and SQL functions
(the grid hierarchy, the append-only audit log and incident history, `incident_stage_deadline`,
`grid_at`) live only in the migrations: Alembic does not compare them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB, TSTZRANGE, ExcludeConstraint
from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from gis.auth.roles import Role
from gis.codes import SQL_PATTERNS, GridLevel
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.loop import State

STAFF_ROLES = ("grid_leader", "grid_member", "party_household", "supervisor")
DEPTH_CLASSES = ("0-0.5", "0.5-1", "1-2", ">2")

_code_rule = " OR ".join(f"(level = {int(lvl)} AND code ~ '{pattern}')" for lvl, pattern in SQL_PATTERNS.items())


def _one_of(column: str, values: Iterable[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


_ROLE_CHECK = _one_of("role", Role)


def _bytewise(length: int | None = None) -> String:
    """ASCII identifiers of incidents, compared byte by byte (migration 0006 says why)."""
    return Text(collation="C") if length is None else String(length, collation="C")


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
        # GET /search (migration 0015): a name by prefix, and from three characters anywhere in it.
        Index("grid_current_name_prefix", "name", postgresql_ops={"name": "text_pattern_ops"},
              postgresql_where=text("valid_to IS NULL")),
        Index("grid_current_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"},
              postgresql_where=text("valid_to IS NULL")),
        # No two versions of one code alive at one instant (migration 0018, btree_gist).
        ExcludeConstraint(("code", "="), ("period", "&&"), name="grid_period_no_overlap", using="gist"),
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
    # [valid_from, valid_to), generated (migration 0018): what "as of t" and the exclusion read.
    period: Mapped[Any] = mapped_column(TSTZRANGE, Computed("tstzrange(valid_from, valid_to, '[)')", persisted=True))

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
    __table_args__ = (   # GET /search (migration 0015)
        Index("natural_village_name_prefix", "name", postgresql_ops={"name": "text_pattern_ops"}),
        Index("natural_village_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )

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
        # GET /search (migration 0015): a household by its number or address.
        Index("household_no_trgm", "household_no", postgresql_using="gin",
              postgresql_ops={"household_no": "gin_trgm_ops"}),
        Index("household_address_trgm", "address", postgresql_using="gin", postgresql_ops={"address": "gin_trgm_ops"}),
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
    value: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- accounts, sessions, emergencies, the audit log (migration 0002) ---


class AppUser(Base):
    """An account: a role, and for grid staff and supervisors the grids they serve."""

    __tablename__ = "app_user"
    __table_args__ = (
        CheckConstraint(_ROLE_CHECK, name="known_role"),
        CheckConstraint("username ~ '^[A-Za-z0-9_.@-]{2,64}$'", name="username_chars"),
        CheckConstraint(
            "role NOT IN ('grid_staff', 'supervisor') OR cardinality(scope_codes) > 0", name="scoped_roles_have_scope"
        ),
        # User names are unique regardless of case.
        Index("app_user_username", func.lower(text("username")), unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20))
    scope_codes: Mapped[list[str]] = mapped_column(ARRAY(String(15)), server_default="{}")
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    is_demo: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiToken(Base):
    """An API token of an account, stored as its hash; it may narrow the account's role and scope."""

    __tablename__ = "api_token"
    __table_args__ = (CheckConstraint("role IS NULL OR " + _ROLE_CHECK, name="known_role"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    token_prefix: Mapped[str] = mapped_column(String(12))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str | None] = mapped_column(String(20))
    scope_codes: Mapped[list[str] | None] = mapped_column(ARRAY(String(15)))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser session, stored as the hash of its cookie."""

    __tablename__ = "web_session"
    __table_args__ = (Index("web_session_user", "user_id"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    client_ip: Mapped[str | None] = mapped_column(Text)


class LoginAttempt(Base):
    """One login try, kept to throttle guessing per user name and per address."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("login_attempt_recent", func.lower(text("username")), "at"),
        Index("login_attempt_ip", "client_ip", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    success: Mapped[bool] = mapped_column(Boolean)


class Emergency(Base):
    """A declared emergency: while open, emergency staff may see the households inside its extent."""

    __tablename__ = "emergency"
    __table_args__ = (
        CheckConstraint("ST_IsValid(extent) AND NOT ST_IsEmpty(extent)", name="extent_valid"),
        CheckConstraint("(closed_at IS NULL) = (closed_by IS NULL)", name="closed_by_whom"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    extent: Mapped[WKBElement] = mapped_column(Geometry("MULTIPOLYGON", srid=4326))
    declared_by: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    declared_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    close_reason: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    """Who did what, to which resources, why and from where. Append-only (a trigger refuses changes)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("audit_log_at", "at"),
        Index("audit_log_actor", "actor", "at"),
        Index("audit_log_resource", "resource", "at"),
        # The list's filters (gis.audit.AuditFilters) each have an index in its order (migration 0011).
        Index("audit_log_action", "action", "at"),
        Index("audit_log_resource_ids", "resource_ids", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # clock_timestamp(): rows written in one transaction keep the order they happened in.
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(String(20))
    via: Mapped[str | None] = mapped_column(String(10))
    client_ip: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str | None] = mapped_column(String(10))
    path: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(40))
    resource: Mapped[str | None] = mapped_column(String(40))
    resource_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20), server_default="ok")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


# --- incidents and their loop (migrations 0003, 0004, 0006, 0007) ---


class Incident(Base):
    """A matter reported in a grid, assigned at all four levels and worked through the closed loop."""

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint(_one_of("category", Category), name="known_category"),
        CheckConstraint(
            "dispute_kind IS NULL OR (category = 'dispute' AND " + _one_of("dispute_kind", DisputeKind) + ")",
            name="dispute_kind_only_for_disputes",
        ),
        CheckConstraint(_one_of("state", State), name="known_state"),
        CheckConstraint(_one_of("location_source", ("coordinates", "gazetteer")), name="known_location_source"),
        CheckConstraint("outside_distance_m IS NULL OR outside_distance_m >= 0", name="distance_positive"),
        # External ids are unique per reporting account; imports (no account) share one namespace.
        Index("incident_external_id_per_reporter", func.coalesce(text("created_by"), 0), "external_id", unique=True),
        # The list pages newest first; the town-wide index carries the filter columns (migration 0007).
        Index(
            "incident_newest",
            "occurred_at",
            "id",
            postgresql_include=[
                "category", "state", "stage_deadline", "on_boundary", "outside_distance_m", "reviewed_at",
                "created_by", "area_code", "town_code", "village_code",
            ],
        ),
        Index("incident_group_code_newest", "group_code", "occurred_at", "id"),
        Index("incident_village_code_newest", "village_code", "occurred_at", "id"),
        Index("incident_stage_deadline", "stage_deadline", postgresql_where=text("stage_deadline IS NOT NULL")),
        Index("incident_created_by", "created_by", postgresql_where=text("created_by IS NOT NULL")),
        Index("incident_external_id", "external_id"),   # GET /search (migration 0015)
        # The review queue: flagged and not yet reviewed, in the queue's order (migration 0009).
        Index(
            "incident_review_queue",
            "occurred_at",
            "id",
            postgresql_where=text(
                "reviewed_at IS NULL AND (on_boundary OR outside_distance_m IS NOT NULL "
                "OR village_code IS NULL OR group_code = village_code)"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(_bytewise())
    category: Mapped[str] = mapped_column(_bytewise(20))
    dispute_kind: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    reporter_name: Mapped[str | None] = mapped_column(Text)
    reporter_phone: Mapped[str | None] = mapped_column(String(20))
    geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=4326))
    location_source: Mapped[str] = mapped_column(String(20))
    input_crs: Mapped[str | None] = mapped_column(Text)
    place_query: Mapped[str | None] = mapped_column(Text)
    place_match: Mapped[str | None] = mapped_column(Text)
    precision_m: Mapped[float | None] = mapped_column(Float)
    group_code: Mapped[str] = mapped_column(_bytewise(15))
    village_code: Mapped[str | None] = mapped_column(_bytewise(15))
    area_code: Mapped[str | None] = mapped_column(_bytewise(15))
    town_code: Mapped[str | None] = mapped_column(_bytewise(15))
    grid_version_id: Mapped[int] = mapped_column(ForeignKey("grid.id"))
    on_boundary: Mapped[bool] = mapped_column(Boolean, server_default=false())
    outside_distance_m: Mapped[float | None] = mapped_column(Float)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(_bytewise(12), server_default="visit")
    state_entered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    satisfied: Mapped[bool | None] = mapped_column(Boolean)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # When the current stage is due (NULL once closed): generated by the database (migration 0007).
    stage_deadline: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), Computed("incident_stage_deadline(category, state, state_entered_at)", persisted=True)
    )


class IncidentEvent(Base):
    """One step of an incident's loop. Immutable (a trigger refuses UPDATE, DELETE and TRUNCATE)."""

    __tablename__ = "incident_event"
    __table_args__ = (Index("incident_event_incident", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(Text)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


# So that reflection (wangge db check) knows the type, and compares it, instead of warning.
postgresql_base.ischema_names["xid8"] = Xid8

class IncidentChange(Base):
    """One incident created or changed, or one large statement (`bulk`, with its row count), written by
    triggers on `incident` (migration 0013) for the live feed (gis/live.py), in (xid, id) order."""

    __tablename__ = "incident_change"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ("created", "changed", "bulk")), name="known_change_kind"),
        CheckConstraint("(kind = 'bulk') = (incident_id IS NULL)", name="bulk_has_no_incident"),
        Index("incident_change_order", "xid", "id"),
        Index("incident_change_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    xid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"))
    incident_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))
    count: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IncidentAssignee(Base):
    """A staff member an incident was routed to, and in which duty."""

    __tablename__ = "incident_assignee"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    duty: Mapped[str] = mapped_column(String(20))


class IncidentDuplicate(Base):
    """A possible duplicate: an open incident of the same category nearby and recent. Linked, never merged."""

    __tablename__ = "incident_duplicate"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    distance_m: Mapped[float] = mapped_column(Float)


class IncidentAttachment(Base):
    """A photo of an incident, or of one step of its loop, stored in the database."""

    __tablename__ = "incident_attachment"
    __table_args__ = (
        CheckConstraint("size = octet_length(data)", name="size_matches"),
        CheckConstraint("content_type IN ('image/jpeg', 'image/png', 'image/webp')", name="image_types"),
        Index("incident_attachment_incident", "incident_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("incident_event.id"))
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- flood (migration 0005) ---


class FloodDem(Base):
    """An imported terrain model and how it was conditioned; its rasters live under var/data/flood/<digest>/."""

    __tablename__ = "flood_dem"
    __table_args__ = (CheckConstraint("height > 0 AND width > 0", name="shape_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    crs: Mapped[str] = mapped_column(Text)
    transform: Mapped[list[float]] = mapped_column(JSONB)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(Text)
    store_path: Mapped[str] = mapped_column(Text)
    rivers: Mapped[WKBElement | None] = mapped_column(Geometry("MULTILINESTRING", srid=4326, spatial_index=False))
    burn_depth_m: Mapped[float] = mapped_column(Float)
    accumulation_threshold_km2: Mapped[float | None] = mapped_column(Float)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FloodExtent(Base):
    """A flooded area: modelled from a DEM at a stage, uploaded, or drawn."""

    __tablename__ = "flood_extent"
    __table_args__ = (
        CheckConstraint(_one_of("source", ("model", "upload", "drawn")), name="known_source"),
        CheckConstraint("mode IS NULL OR " + _one_of("mode", ("fluvial", "pluvial")), name="known_mode"),
        CheckConstraint(
            "(source = 'model') = (dem_id IS NOT NULL AND stage_m IS NOT NULL AND mode IS NOT NULL)",
            name="model_has_dem_stage_mode",
        ),
        CheckConstraint("area_m2 >= 0", name="area_positive"),
        UniqueConstraint("dem_id", "stage_m", "mode", name="one_model_extent_per_stage"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))
    stage_m: Mapped[float | None] = mapped_column(Float)
    mode: Mapped[str | None] = mapped_column(String(10))
    dem_id: Mapped[int | None] = mapped_column(ForeignKey("flood_dem.id", ondelete="CASCADE"))
    geom: Mapped[WKBElement] = mapped_column(Geometry("MULTIPOLYGON", srid=4326))
    area_m2: Mapped[float] = mapped_column(Float)
    input_crs: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by_user: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))


class FloodExtentClass(Base):
    """The part of a modelled extent in one depth class."""

    __tablename__ = "flood_extent_class"
    __table_args__ = (
        PrimaryKeyConstraint("extent_id", "depth_class"),
        CheckConstraint(_one_of("depth_class", DEPTH_CLASSES), name="known_depth_class"),
    )

    extent_id: Mapped[int] = mapped_column(ForeignKey("flood_extent.id", ondelete="CASCADE"))
    depth_class: Mapped[str] = mapped_column(String(8))
    geom: Mapped[WKBElement] = mapped_column(Geometry("MULTIPOLYGON", srid=4326))
    area_m2: Mapped[float] = mapped_column(Float)


class FloodDataVersion(Base):
    """One row: a counter bumped by every statement that changes the flood finder's inputs."""

    __tablename__ = "flood_data_version"
    __table_args__ = (CheckConstraint("one", name="flood_data_version_one_check"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    version: Mapped[int] = mapped_column(BigInteger)


class TileDataVersion(Base):
    """Each vector-tile layer's data version, in 16 slots bumped by statement-level triggers (migration 0012)."""

    __tablename__ = "tile_data_version"
    __table_args__ = (CheckConstraint("slot >= 0 AND slot < 16", name="tile_data_version_slot"),)

    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    grids: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    incidents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    households: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


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
    shelters: Mapped[list[Any]] = mapped_column(JSONB)
    totals: Mapped[dict[str, Any]] = mapped_column(JSONB)  # over every household: what a reader who sees all gets


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
    row: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- roster: staff tenure, responsibilities (联系户), DEM upload jobs (migration 0017, part "roster") ---


class StaffTenure(Base):
    """One stretch of one staff member in one role and grid: [valid_from, valid_to) in days.

    Written by a trigger on `staff` (migration 0017); `staff_id` outlives the staff row."""

    __tablename__ = "staff_tenure"
    __table_args__ = (
        CheckConstraint(_one_of("role", STAFF_ROLES), name="staff_tenure_known_role"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="staff_tenure_period"),
        Index("staff_tenure_grid", "grid_code", "valid_from"),
        Index("staff_tenure_staff", "staff_id"),
        Index("staff_tenure_one_open", "staff_id", unique=True, postgresql_where=text("valid_to IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20))
    grid_code: Mapped[str] = mapped_column(String(15))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class HouseholdResponsible(Base):
    """A staff member responsible for a household (联系户), over [valid_from, valid_to) in days."""

    __tablename__ = "household_responsible"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="household_responsible_period"),
        Index("household_responsible_household", "household_id"),
        Index("household_responsible_staff", "staff_id"),
        Index("household_responsible_one_open", "household_id", "staff_id", unique=True,
              postgresql_where=text("valid_to IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id", ondelete="CASCADE"))
    staff_id: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class DemJob(Base):
    """A DEM uploaded through the API, conditioned in the background; the client polls its progress."""

    __tablename__ = "dem_job"
    __table_args__ = (
        CheckConstraint(_one_of("state", ("queued", "running", "done", "failed")), name="dem_job_known_state"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="dem_job_progress_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(String(10), server_default="queued")
    progress: Mapped[float] = mapped_column(Float, server_default=text("0"))
    step: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # the worker is alive
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    problems: Mapped[list[Any] | None] = mapped_column(JSONB)


# --- publish (issue 15): dated publishes of grid changes (migration 0018) ---------------------------

PUBLISH_STATUSES = ("pending", "applied", "cancelled", "failed")


class GridPublish(Base):
    """One publish of grid changes: what, on which base, effective when, by whom, and its inverse."""

    __tablename__ = "grid_publish"
    __table_args__ = (
        CheckConstraint(_one_of("status", PUBLISH_STATUSES), name="grid_publish_known_status"),
        Index("grid_publish_due", "effective_at", postgresql_where=text("status = 'pending'")),
        Index("grid_publish_newest", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    changes: Mapped[list[Any]] = mapped_column(JSONB)
    base: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    effective_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    inverse: Mapped[list[Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    failure: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_by_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    applied_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

# --- issue 14, reg: the register's imports, history and how households were placed (migration 0016) ---

REGISTER_CHANGE_KINDS = ("household_added", "moved_in", "moved_out", "born", "died", "phone_changed", "moved_group",
                         "address_changed", "head_changed", "details_changed")
LOCATED_BY = ("coordinates", "address", "settlement")


class RegisterImport(Base):
    """One run of a register import: the file, the mode, the date the register is as of, the counts."""

    __tablename__ = "register_import"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(Text)
    as_of: Mapped[dt.date] = mapped_column(Date)
    rows: Mapped[int] = mapped_column(Integer)
    households: Mapped[int] = mapped_column(Integer)
    residents: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)


class RegisterChange(Base):
    """What a re-import found changed in a household (moved in/out, born, died, phone ...), with its date."""

    __tablename__ = "register_change"
    __table_args__ = (
        CheckConstraint(_one_of("kind", REGISTER_CHANGE_KINDS), name="register_change_kind"),
        Index("register_change_household", "household_no", "effective_date"),
        Index("register_change_id_number", "id_number"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_no: Mapped[str] = mapped_column(String(32))
    id_number: Mapped[str | None] = mapped_column(String(18))
    kind: Mapped[str] = mapped_column(String(24))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    effective_date: Mapped[dt.date] = mapped_column(Date)
    import_id: Mapped[int | None] = mapped_column(BigInteger)  # register_import.id (no FK: see 0016)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ResidentPeriod(Base):
    """A resident's tenure in a household, [valid_from, valid_to); valid_from NULL = before the register."""

    __tablename__ = "resident_period"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_from IS NULL OR valid_from <= valid_to",
                        name="resident_period_order"),
        Index("resident_period_household", "household_no"),
        Index("resident_period_key", "resident_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_no: Mapped[str] = mapped_column(String(32))
    resident_key: Mapped[str] = mapped_column(Text)
    id_number: Mapped[str | None] = mapped_column(String(18))
    name: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[dt.date | None] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    import_id: Mapped[int | None] = mapped_column(BigInteger)  # register_import.id (no FK: see 0016)


class HouseholdLocation(Base):
    """How an imported household was placed: its coordinates, a known house address, or a settlement's point."""

    __tablename__ = "household_location"
    __table_args__ = (CheckConstraint(_one_of("located_by", LOCATED_BY), name="household_location_by"),)

    household_id: Mapped[int] = mapped_column(ForeignKey("household.id", ondelete="CASCADE"), primary_key=True)
    located_by: Mapped[str] = mapped_column(String(16))
    precision_m: Mapped[float | None] = mapped_column(Float)
    place: Mapped[str | None] = mapped_column(Text)
