"""An agency's audit lists what its people did in its sellers' data: those entries
are kept under the seller's tenant and name the agency as ``detail.acting_tenant``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX audit_log_acting_tenant_at ON audit_log ((detail->>'acting_tenant'), at) "
        "WHERE detail->>'acting_tenant' IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX audit_log_acting_tenant_at")
