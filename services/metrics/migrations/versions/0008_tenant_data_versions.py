"""A version per tenant, bumped by every transaction that applies its facts, so cached
answers know when they are stale.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenant_data_versions (
            tenant_id text PRIMARY KEY,
            version bigint NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE tenant_data_versions")
