"""FX rates remember when they were pushed, so the one pushed last wins a tie.

Two ``fx_rate`` events for one pair and one date are a correction: the seller pushed a
new rate under a new event id. The newest rate was chosen by event id, so "fx-9" beat
a later "fx-10". Rates kept before this revision have no time and lose to any newer one.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE fx_rates ADD COLUMN ingested_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE fx_rates DROP COLUMN ingested_at")
