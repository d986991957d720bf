"""A user's e-mail is unique within its tenant, not across tenants.

Unique across all tenants, an e-mail told one tenant's admin, by a 409, that another
tenant had a user by that address, and kept one person from being a user of two
tenants (a seller's and its agency's, say). Sign-in looks the address up within the
tenant of the application signed in to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("users_email", table_name="users")
    op.create_index(
        "users_tenant_email", "users", ["tenant_id", sa.text("lower(email)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("users_tenant_email", table_name="users")
    op.create_index("users_email", "users", [sa.text("lower(email)")], unique=True)
