"""Shipments not shipped yet, with their promised instant.

CONTRACT §4 counts a shipment late when it is "not shipped by now". The daily rollups
know only its promised local day, so one promised for earlier today stayed on time
until the store's day was over. The query now counts, for the store's current day,
the open shipments whose promised instant has passed, from this table; earlier days
still come from the rollups. It holds a shipment while it is neither shipped nor
cancelled by the seller, and is filled here from the kept events.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE open_shipments (
            tenant_id text NOT NULL,
            event_id text NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            promised_ship_by timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, event_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX open_shipments_by_promise ON open_shipments (tenant_id, promised_ship_by)"
    )
    op.execute(
        """
        INSERT INTO open_shipments
        SELECT tenant_id, event_id, platform, store_id, marketplace,
               (payload->>'promised_ship_by')::timestamptz
        FROM events_raw
        WHERE type = 'shipment' AND payload->>'shipped_at' IS NULL
          AND NOT coalesce((payload->>'cancelled_by_seller_before_ship')::boolean, false)
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE open_shipments")
