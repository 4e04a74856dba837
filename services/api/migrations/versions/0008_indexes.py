"""indexes: the outbox relay and the task polls do not grow with finished work

The relay reads `outbox WHERE published_at IS NULL ORDER BY id`: a partial index holds only
the pending rows, so the read stays as cheap with a million published rows as with none.
Task lists filtered by status or project, newest first (the scheduler's and the console's
polls), read an index in their order instead of sorting every matching row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("published_at IS NULL")


def upgrade() -> None:
    """Apply this revision."""
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index("ix_tasks_project_id_created_at", "tasks", ["project_id", "created_at"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_tasks_project_id_created_at", table_name="tasks")
    op.drop_index("ix_tasks_status_created_at", table_name="tasks")
    op.drop_index("ix_outbox_pending", table_name="outbox")
