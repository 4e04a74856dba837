"""project secrets and modules: the `project_secrets` table (values sealed with Fernet) and
`projects.modules` (comma-separated, default `backend`)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "project_secrets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_secrets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_secrets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_project_secrets_project_id_name")),
    )
    op.create_index(
        op.f("ix_project_secrets_project_id"), "project_secrets", ["project_id"], unique=False
    )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("modules", sa.Text(), nullable=False, server_default="backend")
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("modules")
    op.drop_index(op.f("ix_project_secrets_project_id"), table_name="project_secrets")
    op.drop_table("project_secrets")
