"""Events published again wait behind fresh ones, and are not pending.

When the embedded broker (which keeps its log in memory) starts again, the relay
publishes the last day's sent events again. They were marked unsent, so every event
pushed after the restart waited behind hundreds of thousands of repeats, and the
outbox status counted them as pending. They are now marked ``resend``: the relay sends
fresh rows first, and only ``sent_at IS NULL`` is pending.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox", sa.Column("resend", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_index("outbox_resend", "outbox", ["id"], postgresql_where=sa.text("resend"))


def downgrade() -> None:
    # Rows waiting to be sent again go back to the unsent queue they used to join.
    op.execute("UPDATE outbox SET sent_at = NULL WHERE resend")
    op.drop_index("outbox_resend", "outbox")
    op.drop_column("outbox", "resend")
