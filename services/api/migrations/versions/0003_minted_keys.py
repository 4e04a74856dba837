"""minted tokens: api_keys.parent_id, the user token that created a key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:30:00.000000

Keys created before this revision have no parent; revoking a key revokes the keys whose
`parent_id` names it, and theirs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_keys_parent_id"), ["parent_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_parent_id_api_keys"),
            "api_keys",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_keys_parent_id_api_keys"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_keys_parent_id"))
        batch_op.drop_column("parent_id")
