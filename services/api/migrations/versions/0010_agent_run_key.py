"""agent_runs.run_key: a run is recorded once per task and key (a replayed answer)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("agent_runs") as batch:
        batch.add_column(sa.Column("run_key", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_agent_runs_task_id_run_key"), ["task_id", "run_key"]
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("agent_runs") as batch:
        batch.drop_constraint(op.f("uq_agent_runs_task_id_run_key"), type_="unique")
        batch.drop_column("run_key")
