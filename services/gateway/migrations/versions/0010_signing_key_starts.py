"""When each signing key starts to sign.

A rotation publishes the new key in the JWKS some minutes before it signs, so that a
client caching the JWKS knows it before it meets a token it signed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "signing_keys",
        sa.Column("signs_from", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("UPDATE signing_keys SET signs_from = created_at")
    op.alter_column("signing_keys", "signs_from", nullable=False)


def downgrade() -> None:
    op.drop_column("signing_keys", "signs_from")
