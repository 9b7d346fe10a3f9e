"""Settings read from the environment (prefix WANGGE_, plus DATABASE_URL), with hard caps in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WANGGE_", extra="ignore")

    # DATABASE_URL (no prefix) wins; otherwise the private cluster made by `make serve` / `make test`
    # left its URL in var/database_url.
    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    var_dir: Path = PROJECT_ROOT / "var"
    data_dir: Path = PROJECT_ROOT / "var" / "data"
    boundaries_dir: Path = PROJECT_ROOT / "data" / "boundaries"

    # 0 = no pooling (tests copy databases by TEMPLATE, which needs no idle connections).
    database_pool_size: int = 5
    database_pool_max_overflow: int = 10
    # How long a request may wait for a database connection before it answers 503 (Retry-After).
    database_pool_timeout_s: float = 3.0
    # How long a request's statement may wait for a lock another transaction holds (then 503).
    database_lock_timeout_ms: int = 5000
    # A pooled connection unused for longer than this many seconds is checked (one round trip) before
    # it is lent (gis.db.ping_when_idle); one returned a moment ago is not. 0: every one is checked, a
    # round trip per request (None, in code: SQLAlchemy's own pool_pre_ping).
    database_ping_after_idle_s: float | None = 10.0
    # The busiest routes (the incident list, tiles, the intake, the flood list) served by their lean path
    # (api.lean); false: by FastAPI's own handler like every other route (the same answers; a diagnostic).
    lean_routes: bool = True
    # Their work on psycopg's async driver, in a greenlet on the event loop (no thread hop; api.deps.in_session);
    # false: in a worker thread on the sync driver.
    lean_async: bool = True

    host: str = "127.0.0.1"
    port: int = 8000
    # Started as root (`make serve`), the server drops to this system user (made if missing).
    service_user: str = "wangge"
    # When the code or Python sits in a closed folder (a checkout or pyenv under /root), grant
    # that user search on it (an ACL, else o+x) instead of refusing to start.
    service_open_folders: bool = True

    # Optional on-line base map; None keeps every page fully offline (hillshade or plain background).
    tile_url: str | None = None
    tile_attribution: str | None = None

    # Caps: requests and files a client may send, and what one answer may hold.
    max_upload_bytes: int = 50 * 1024 * 1024
    max_features_per_file: int = 10_000
    max_vertices_per_geometry: int = 100_000
    max_zip_entries: int = 100
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_features_per_page: int = 5_000
    max_points_per_locate: int = 10_000
    # Points outside the town but closer than this are still answered with the nearest grid.
    gap_tolerance_m2: float = 1.0
    overlap_tolerance_m2: float = 1.0
    # Grid boundaries: gaps, overlaps and parts outside the parent no wider than this are
    # coordinate rounding (7 decimals ≈ 1 cm), and a re-imported outline that moved no more than
    # this is unchanged (no new version).
    boundary_tolerance_m: float = 0.1

    # Accounts and sessions.
    session_cookie_name: str = "wangge_session"
    session_cookie_secure: bool = True
    session_hours: float = 12.0
    # Login throttling (gis.auth.accounts.LoginPolicy): failures per account and client address,
    # per address, and a doubling back-off per account over all addresses.
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 30
    login_window_minutes: int = 15
    login_account_backoff_after: int = 10
    login_account_backoff_base_s: float = 1.0
    login_account_backoff_max_s: float = 60.0
    # Origins (scheme://host[:port], comma-separated) besides the service's own from which browser
    # pages may log in or write with the session cookie, e.g. a reverse proxy's public address.
    trusted_origins: Annotated[tuple[str, ...], NoDecode] = ()
    max_json_body_bytes: int = 2 * 1024 * 1024
    max_audit_export_rows: int = 100_000

    # Incidents.
    incident_outside_tolerance_m: float = 200.0
    duplicate_radius_m: float = 100.0
    duplicate_window_hours: float = 72.0
    max_incident_rows_per_file: int = 2_000_000
    max_attachment_bytes: int = 10 * 1024 * 1024
    # GET /incidents counts its matches exactly up to this many; beyond, the total is the planner's
    # estimate (answered with total_exact false): counting a million rows costs more than a page.
    max_exact_incident_count: int = 10_000
    # A photo is decoded to be accepted; more pixels than a 50-megapixel camera's are refused.
    max_attachment_pixels: int = 50_000_000

    @field_validator("trusted_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    # Flood model: the bounded set of stages that may be modelled (multiples of the step, up to the
    # maximum, per DEM and mode), and those computed when a DEM is imported. A GET answers only
    # stored stages; others are computed by POST /flood/scenarios (admin, command center), the CLI.
    flood_max_stage_m: float = 20.0
    flood_stage_step_m: float = 0.5
    flood_precomputed_fluvial_m: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    flood_precomputed_pluvial_m: tuple[float, ...] = (0.5, 1.0)

    @model_validator(mode="after")
    def _database_from_var(self) -> Settings:
        if not self.database_url:
            url_file = self.var_dir / "database_url"
            if url_file.exists():
                self.database_url = url_file.read_text().strip()
        return self

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "No database: set DATABASE_URL to a PostGIS database, or run `make serve` "
                "to create the private one under var/."
            )
        url = self.database_url
        # Plain postgresql:// URLs use psycopg 3, the driver we ship.
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
