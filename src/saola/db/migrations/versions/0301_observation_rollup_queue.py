"""Queue of rollup deltas folded after ingest commits (PostgreSQL's fast ingest path)

Revision ID: 0301
Revises: 0300
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saola.db.types

revision: str = "0301"
down_revision: str | None = "0300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "observation_rollup_queue",
        sa.Column("indicator_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("bucket", saola.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("lo", sa.Float(), nullable=True),
        sa.Column("hi", sa.Float(), nullable=True),
        sa.Column("last_ts", saola.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("top_ts", saola.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("top_value", sa.Float(), nullable=False),
        sa.Column("top_quality", sa.SmallInteger(), nullable=False),
        sa.Column("top_source", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("observation_rollup_queue")
