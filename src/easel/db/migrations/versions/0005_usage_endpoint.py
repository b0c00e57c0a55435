"""Usage records say which endpoint a request came in by: generations, edits or variations.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every record before this one came from /v1/images/generations.
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("endpoint", sa.String(16), nullable=False, server_default="generations")
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("endpoint")
