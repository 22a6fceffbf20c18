"""One Settings class for the whole application (environment prefix SAOLA_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The demo's secret is public on purpose: it is printed in the docs and refused outside demo mode.
DEMO_SECRET_KEY = "saola-demo-secret-key-do-not-use-in-production"


class InsecureSettingsError(RuntimeError):
    """Raised when the server would start with a secret that anybody can read."""


class Settings(BaseSettings):
    """Every setting Saola reads; each field maps to an environment variable SAOLA_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="SAOLA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("saola-data"), description="Folder for the embedded database and files.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file saola.db inside data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    secret_key: str = Field(default=DEMO_SECRET_KEY, description="Key that signs bearer tokens.")
    demo_mode: bool = Field(default=False, description="True only under `saola demo`: allows the demo secret.")
    node_id: str = Field(default="VN-68", description="Name of this deployment node, carried by every record.")
    token_ttl_minutes: int = Field(default=12 * 60, ge=1, description="Lifetime of a bearer token.")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(default=False, description="Write logs as JSON lines instead of console text.")
    disabled_packs: list[str] = Field(default_factory=list, description="Built-in pack slugs not to load.")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="Time zone used to show times.")
    run_jobs: bool = Field(default=True, description="Run the packs' scheduled jobs in this process.")
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1024,
                                      description="Largest file attached to a case.")
    cap_sender: str = Field(default="", max_length=120, description="CAP sender; default saola@<node_id>.")
    smtp_host: str | None = Field(default=None, description="SMTP server for alert e-mail; unset: no e-mail.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_username: str = Field(default="", description="SMTP login (empty: no login).")
    smtp_password: str = Field(default="", description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_from: str = Field(default="saola@localhost", description="Sender address of alert e-mail.")
    smtp_to: list[str] = Field(default_factory=list, description="Recipients of alert e-mail (JSON list).")
    smtp_min_severity: Literal["info", "low", "medium", "high", "critical"] = Field(
        default="high", description="Alerts at this severity or above are e-mailed.")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Timeout of one webhook/SMTP try.")
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="Tries before a delivery is given up.")
    bus_url: str | None = Field(default=None, description="Bus for several workers: redis://host:6379/0 (a Redis "
                                "Stream); unset: the in-process bus.")
    mqtt_url: str | None = Field(default=None, description="MQTT broker to subscribe to (mqtt://user:pass@host:1883); "
                                 "unset: no MQTT door.")
    mqtt_client_id: str = Field(default="", max_length=120,
                                description="MQTT client id (and persistent session); default saola-<node_id>.")
    rollup_fold_ms: int = Field(default=500, ge=1, le=60_000, description=(
        "PostgreSQL: the shortest time between two folds of queued rollup deltas into the hourly, daily and "
        "latest tables (longer under load; reads in the same process fold at once)."))
    lookup_cache_seconds: float = Field(default=5.0, ge=0, le=300, description=(
        "How long a worker keeps what writes look up (a source's key, indicators, unit paths); a change made "
        "through another worker is seen after at most this long. 0: no caching."))
    citizen_reports_default_unit: str = Field(default="68", max_length=16,
                                              description="Unit of citizen reports that name no commune.")
    citizen_reports_per_ip_per_hour: int = Field(default=10, ge=1,
                                                 description="Citizen reports one IP address may send per hour.")
    citizen_reports_per_contact_per_day: int = Field(default=5, ge=1,
                                                     description="Citizen reports one phone or e-mail may send a day.")
    citizen_reports_max_photo_bytes: int = Field(default=4 * 1024 * 1024, ge=1024,
                                                 description="Largest photo of a citizen report.")
    citizen_reports_duplicate_radius_m: float = Field(default=50.0, ge=0, le=5000,
                                                      description="Same category this close is the same problem.")
    citizen_reports_duplicate_minutes: int = Field(default=180, ge=0,
                                                   description="How long an open report absorbs duplicates.")
    citizen_reports_require_captcha: bool = Field(default=False,
                                                  description="Refuse public reports no captcha verifier accepted.")
    citizen_reports_public_decimals: int = Field(default=3, ge=2, le=6,
                                                 description="Decimals of coordinates shown to the public.")
    web_tile_url: str = Field(default="", max_length=500, description=(
        "Map tile URL template ({z}/{x}/{y}) the web UI draws under its layers; empty: a plain background."))
    web_tile_attribution: str = Field(default="", max_length=300, description="Attribution shown with the tiles.")
    web_map_center: tuple[float, float] = Field(default=(11.94, 108.45), description=(
        "Latitude and longitude the maps open on before their layers load (default: Đà Lạt)."))
    web_map_zoom: int = Field(default=11, ge=1, le=19, description="Zoom the maps open at.")

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'saola.db').as_posix()}"
        return self

    @property
    def url(self) -> str:
        """The database URL, always set after validation."""
        assert self.database_url is not None
        return self.database_url

    @property
    def is_sqlite(self) -> bool:
        """True when the store is the embedded SQLite file."""
        return self.url.startswith("sqlite")

    def check_secure(self) -> None:
        """Refuse to serve outside demo mode with the public demo secret or a short one."""
        if self.demo_mode:
            return
        if self.secret_key == DEMO_SECRET_KEY:
            raise InsecureSettingsError(
                "SAOLA_SECRET_KEY is the public demo key; set a secret of your own "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if len(self.secret_key) < 32:
            raise InsecureSettingsError("SAOLA_SECRET_KEY must be at least 32 characters long")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
