"""task order: a task's release time, a project's number of parallel engineering tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision: existing tasks count as released when they were created."""
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE tasks SET released_at = created_at WHERE type IN ('engineering', 'deploy')")
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("parallel_tasks", sa.Integer(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("parallel_tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("released_at")
