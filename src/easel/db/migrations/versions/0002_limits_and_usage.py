"""Per-key policy (rates, quota, models, expiry, disabled), rate buckets, quota, usage records.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for column in ("rpm", "ipm", "user_rpm", "user_ipm", "quota"):
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("quota_period", sa.String(8), nullable=False, server_default="total")
        )
        batch.add_column(sa.Column("models", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.String(300), primary_key=True),
        sa.Column("tat", sa.Float(), nullable=False),
    )
    op.create_table(
        "quota_usage",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
    )
    op.create_table(
        "quota_reservations",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_quota_reservations_key_id", "quota_reservations", ["key_id"])
    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("size", sa.String(20), nullable=False),
        sa.Column("quality", sa.String(20), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("images_delivered", sa.Integer(), nullable=False),
        sa.Column("queued_ms", sa.Integer(), nullable=False),
        sa.Column("generating_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    for column in ("created_at", "day", "key_id"):
        op.create_index(f"ix_usage_records_{column}", "usage_records", [column])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("quota_reservations")
    op.drop_table("quota_usage")
    op.drop_table("rate_buckets")
    with op.batch_alter_table("api_keys") as batch:
        for column in (
            "disabled",
            "expires_at",
            "models",
            "quota_period",
            "quota",
            "user_ipm",
            "user_rpm",
            "ipm",
            "rpm",
        ):
            batch.drop_column(column)
