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
