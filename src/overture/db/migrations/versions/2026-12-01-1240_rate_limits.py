"""rate_limits: per-window request counts of public keys and client addresses, shared by processes

Revision ID: rate_limits
Revises: foundation
Create Date: 2026-12-01 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rate_limits"
down_revision = "foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counts",
        sa.Column("window_no", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("window_no", "subject", name="pk_rate_limit_counts"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_counts")
