"""Environment pack: station state (current indices) and the data-quality log

Revision ID: environment_0001
Revises:
Create Date: 2026-12-02 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import saola.db.types

revision: str = "environment_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("environment",)
depends_on: str | Sequence[str] | None = "0002"

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "env_station_state",
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("aqi_vn", sa.Integer(), nullable=True),
        sa.Column("aqi_vn_level", sa.Integer(), nullable=True),
        sa.Column("dominant", sa.String(length=16), nullable=True),
        sa.Column("aqi_us", sa.Integer(), nullable=True),
        sa.Column("aqi_vn_day", sa.Integer(), nullable=True),
        sa.Column("aqi_us_day", sa.Integer(), nullable=True),
        sa.Column("aqi_ts", saola.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("stuck", _JSON, nullable=False),
        sa.Column("exceedances", _JSON, nullable=False),
        sa.Column("updated_at", saola.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_env_station_state_entity_id_entities"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entity_id", name=op.f("pk_env_station_state")),
    )
    op.create_table(
        "env_quality_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("indicator", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("started_at", saola.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", saola.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_env_quality_flags_entity_id_entities"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_env_quality_flags")),
    )
    op.create_index("ix_env_quality_flags_entity", "env_quality_flags", ["entity_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_env_quality_flags_entity", table_name="env_quality_flags")
    op.drop_table("env_quality_flags")
    op.drop_table("env_station_state")
