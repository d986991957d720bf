"""Tenant data exports (the archive kept in the row) and erasure requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # No foreign key to tenants: an erasure deletes the tenant but the tenant's access
    # tokens still verify until they expire, and an export they ask for must still run.
    op.create_table(
        "exports",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("tables_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tables_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("archive", sa.LargeBinary, nullable=True),
        sa.Column("archive_sha256", sa.Text, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        # Touched while the export runs: a running export whose heartbeat stopped was
        # left by a process that died, and is marked failed.
        sa.Column("heartbeat_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('running', 'ready', 'failed')", name="exports_status"),
    )
    op.create_index("exports_tenant_created", "exports", ["tenant_id", "created_at"])
    op.create_index(
        "exports_running",
        "exports",
        ["heartbeat_at"],
        postgresql_where=sa.text("status = 'running'"),
    )
    # The proof of an erasure, and the one row that keeps the erased tenant's id.
    op.create_table(
        "erasures",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_at", TS, nullable=False, server_default=sa.func.now()),
        # {"<service>": {"status": "pending"|"done", "rows_deleted": n, "finished_at": ts}}
        sa.Column("services", postgresql.JSONB, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("erasures_tenant_requested", "erasures", ["tenant_id", "requested_at"])


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("exports")
