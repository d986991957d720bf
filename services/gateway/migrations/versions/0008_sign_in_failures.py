"""Failed sign-ins per address, to slow down password guessing.

Each tenant's sign-in page took as many passwords for one address as its rate limit
let through, and the right one still signed in after any number of wrong ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
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
        CREATE TABLE sign_in_failures (
            tenant_id text NOT NULL,
            email text NOT NULL,
            failures integer NOT NULL,
            last_failed_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, email)
        )
        """
    )


def downgrade() -> None:
    op.drop_table("sign_in_failures")
