"""The outbox keeps the whole trace context; idempotency keys can be expired by age.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # W3C tracestate travels with traceparent so vendors' trace state survives the relay.
    op.add_column("outbox", sa.Column("tracestate", sa.Text, nullable=True))
    # The relay's periodic cleanup deletes keys older than the retention window.
    op.create_index("idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_column("outbox", "tracestate")
