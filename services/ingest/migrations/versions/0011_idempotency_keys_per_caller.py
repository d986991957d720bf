"""Idempotency keys are the caller's own, not the whole tenant's.

A seller's ERP, its Shopify app and its agency each number their pushes; under one
tenant-wide key space, one caller's "batch-1" refused the next caller's as a key used
with another body. Keys are now kept per caller (the token's client, and its user for a
user's token). Keys claimed before stay under the caller '' and expire as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "idempotency_keys", sa.Column("caller", sa.Text, nullable=False, server_default="")
    )
    op.alter_column("idempotency_keys", "caller", server_default=None)
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.create_primary_key(
        "idempotency_keys_pkey", "idempotency_keys", ["tenant_id", "caller", "key"]
    )


def downgrade() -> None:
    # Of keys two callers share, the newest is kept: the older ones' retries store again,
    # and the events' own ids and versions still keep them from counting twice.
    op.execute(
        "DELETE FROM idempotency_keys k USING idempotency_keys n WHERE n.tenant_id = k.tenant_id "
        "AND n.key = k.key AND (n.created_at, n.caller) > (k.created_at, k.caller)"
    )
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["tenant_id", "key"])
    op.drop_column("idempotency_keys", "caller")
