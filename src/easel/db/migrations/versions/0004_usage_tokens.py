"""Usage records keep the tokens a response reported: input text and image tokens, output tokens.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ("input_text_tokens", "input_image_tokens", "output_tokens")


def upgrade() -> None:
    # Records written before carry no tokens.
    with op.batch_alter_table("usage_records") as batch:
        for column in _COLUMNS:
            batch.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
