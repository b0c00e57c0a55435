"""Rate bucket holds: the units a refused larger request keeps back for its retry, until when.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing buckets start without a hold.
    with op.batch_alter_table("rate_buckets") as batch:
        batch.add_column(sa.Column("hold_units", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("hold_until", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("rate_buckets") as batch:
        batch.drop_column("hold_until")
        batch.drop_column("hold_units")
