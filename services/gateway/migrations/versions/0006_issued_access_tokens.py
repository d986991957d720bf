"""The access tokens a sign-in issued, so that ending the sign-in ends them too.

A reused refresh token or authorization code, or a revoked refresh token, revoked the
refresh tokens of its family, but the access tokens already issued from it stayed
valid for their fifteen minutes: a thief's token among them. The ids of a family's
live access tokens are kept here, and its end revokes them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issued_access_tokens",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("family_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("issued_access_tokens_family", "issued_access_tokens", ["family_id"])


def downgrade() -> None:
    op.drop_table("issued_access_tokens")
