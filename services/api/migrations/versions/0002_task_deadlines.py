"""task deadlines and re-drives: tasks.deadline_at, redrive_count, redriven_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:30:00.000000

Tasks created before this revision keep a NULL `deadline_at`; the API reports their
deadline as their creation plus the current allowance of their type.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("redrive_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("redriven_at")
        batch_op.drop_column("redrive_count")
        batch_op.drop_column("deadline_at")
