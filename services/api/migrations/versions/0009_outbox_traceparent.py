"""outbox traceparent: the trace context of the request that wrote a row

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("traceparent")
