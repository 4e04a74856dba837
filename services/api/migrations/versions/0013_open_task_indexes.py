"""indexes: a task create does not grow with the finished tasks of its project or user

A create reads the project's open engineering tasks (the turns in use, the oldest waiting
one) and the user's open tasks that hold budget. Led by the status, these indexes reach the
few open tasks directly; without them SQLite (which keeps no statistics) walked every task
of the project or of the user (0.2 s each with 100,000 finished tasks).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 20:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index(
        "ix_tasks_status_project_id_created_at", "tasks", ["status", "project_id", "created_at"]
    )
    op.create_index("ix_tasks_user_id_status", "tasks", ["user_id", "status"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_tasks_user_id_status", table_name="tasks")
    op.drop_index("ix_tasks_status_project_id_created_at", table_name="tasks")
