"""The nonce of an OpenID sign-in, kept with its code for the ID token.

An agency portal built on an OpenID Connect library asks for the `openid` scope and
a `nonce`, and checks that the ID token it gets back names that nonce.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("authorization_codes", sa.Column("nonce", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("authorization_codes", "nonce")
