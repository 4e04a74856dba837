"""deploys: the health of a release as the scheduler sees it, and its supervisor's restarts

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("health", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("health_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("health_changes", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("restarts", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("restarts")
        batch.drop_column("health_changes")
        batch.drop_column("health_changed_at")
        batch.drop_column("health")
