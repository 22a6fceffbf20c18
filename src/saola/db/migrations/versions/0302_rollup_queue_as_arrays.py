"""Rollup queue: one row of arrays per ingest transaction instead of one row per delta (PostgreSQL)

A 10,000-reading batch queued ~4,000 delta rows that the fold deleted again one by one; one row holding the deltas
as arrays costs a single insert and a single delete. Times are Unix microseconds (exact in int8, and in float8,
which the fold uses to pick the newest reading with max(ARRAY[...])); the arrays are stored without compression.
Deltas queued before the upgrade are carried over. SQLite never used the queue (it folds inside the ingest
transaction) and keeps no table for it.

Revision ID: 0302
Revises: 0301
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0302"
down_revision: str | None = "0301"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("indicator_id", sa.Integer), ("subject_id", sa.Integer), ("hour_us", sa.BigInteger), ("n", sa.Integer),
            ("total", sa.Float), ("lo", sa.Float), ("hi", sa.Float), ("last_us", sa.BigInteger),
            ("last_value", sa.Float), ("top_us", sa.BigInteger), ("top_value", sa.Float),
            ("top_quality", sa.SmallInteger), ("top_source", sa.Integer))
_MICROS = "(extract(epoch FROM {0}) * 1000000)::int8"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_table("observation_rollup_queue")
        return
    op.rename_table("observation_rollup_queue", "observation_rollup_queue_0301")
    op.create_table("observation_rollup_queue",
                    *(sa.Column(name, postgresql.ARRAY(kind()), nullable=False) for name, kind in _COLUMNS))
    # The arrays are stored out of line uncompressed: pglz spent more CPU on them than the COPY of the readings.
    op.execute("ALTER TABLE observation_rollup_queue " + ", ".join(
        f"ALTER COLUMN {name} SET STORAGE EXTERNAL" for name, _ in _COLUMNS))
    op.execute(f"""
        INSERT INTO observation_rollup_queue
        SELECT array_agg(indicator_id), array_agg(subject_id), array_agg({_MICROS.format("bucket")}), array_agg(n),
               array_agg(total), array_agg(coalesce(lo, 0)), array_agg(coalesce(hi, 0)),
               array_agg(coalesce({_MICROS.format("last_ts")}, 0)), array_agg(coalesce(last_value, 0)),
               array_agg({_MICROS.format("top_ts")}), array_agg(top_value), array_agg(top_quality),
               array_agg(coalesce(top_source, 0))
        FROM observation_rollup_queue_0301 HAVING count(*) > 0""")
    op.drop_table("observation_rollup_queue_0301")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.rename_table("observation_rollup_queue", "observation_rollup_queue_0302")
    epoch = "timestamptz '1970-01-01 00:00:00+00'"
    op.create_table(
        "observation_rollup_queue",
        sa.Column("indicator_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("lo", sa.Float(), nullable=True),
        sa.Column("hi", sa.Float(), nullable=True),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("top_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("top_value", sa.Float(), nullable=False),
        sa.Column("top_quality", sa.SmallInteger(), nullable=False),
        sa.Column("top_source", sa.Integer(), nullable=True),
    )
    if not postgres:
        return
    op.execute(f"""
        INSERT INTO observation_rollup_queue
        SELECT i, s, {epoch} + h * interval '1 microsecond', n, t, CASE WHEN n > 0 THEN lo END,
               CASE WHEN n > 0 THEN hi END, CASE WHEN n > 0 THEN {epoch} + lt * interval '1 microsecond' END,
               CASE WHEN n > 0 THEN lv END, {epoch} + tt * interval '1 microsecond', tv, tq, NULLIF(src, 0)
        FROM (SELECT u.* FROM observation_rollup_queue_0302 AS q,
                unnest(q.indicator_id, q.subject_id, q.hour_us, q.n, q.total, q.lo, q.hi, q.last_us, q.last_value,
                       q.top_us, q.top_value, q.top_quality, q.top_source)
                  AS u(i, s, h, n, t, lo, hi, lt, lv, tt, tv, tq, src)) AS d""")
    op.drop_table("observation_rollup_queue_0302")
