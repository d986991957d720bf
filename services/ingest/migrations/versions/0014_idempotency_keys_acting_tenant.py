"""An idempotency key claimed under a grant names the agency that claimed it.

Its caller is the agency's client (and user): after the agency's erasure, the seller's
keys still named them, and the seller's export handed them out. Erasing a tenant now
deletes the keys it claimed in other tenants' data. Keys claimed before are left to
expire, as every key does.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("acting_tenant", sa.Text, nullable=True))
    op.create_index(
        "idempotency_keys_acting_tenant",
        "idempotency_keys",
        ["acting_tenant"],
        postgresql_where=sa.text("acting_tenant IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("idempotency_keys_acting_tenant", table_name="idempotency_keys")
    op.drop_column("idempotency_keys", "acting_tenant")
