"""An index for prefix matches on units.path (every scope and subtree check), usable by PostgreSQL's LIKE

Revision ID: 0400
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0400"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = ("units_path",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_units_path_pattern", "units", ["path"], unique=False,
                    postgresql_ops={"path": "text_pattern_ops"})


def downgrade() -> None:
    op.drop_index("ix_units_path_pattern", table_name="units")
