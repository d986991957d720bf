"""A shipment the seller cancelled before shipping is neither due nor late.

It never ships, so it counted as due and, once its promised day passed, as late: the
seller paid for one cancellation in both late_shipment_rate and
pre_fulfillment_cancel_rate. Marketplaces count such orders in the cancel rate only.
The consumer no longer adds them to ``shipments_due`` or ``shipments_unshipped``; the
cells of those already applied are taken back here.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The marketplaces' zones when this migration was written (shared.time then): the
# cells being corrected were bucketed by them, whatever the map says later.
_ZONES = """
AE Asia/Dubai, AR America/Argentina/Buenos_Aires, AU Australia/Sydney,
BE Europe/Brussels, BR America/Sao_Paulo, CA America/Los_Angeles, CL America/Santiago,
CN Asia/Shanghai, CO America/Bogota, DE Europe/Berlin, EG Africa/Cairo, ES Europe/Madrid,
FR Europe/Paris, GB Europe/London, ID Asia/Jakarta, IE Europe/Dublin, IN Asia/Kolkata,
IT Europe/Rome, JP Asia/Tokyo, KR Asia/Seoul, MX America/Mexico_City,
MY Asia/Kuala_Lumpur, NL Europe/Amsterdam, PE America/Lima, PH Asia/Manila,
PL Europe/Warsaw, SA Asia/Riyadh, SE Europe/Stockholm, SG Asia/Singapore,
TH Asia/Bangkok, TR Europe/Istanbul, US America/Los_Angeles, UY America/Montevideo,
VN Asia/Ho_Chi_Minh
"""
_ZONE_ROWS = ", ".join(
    "('{}', '{}')".format(*pair.split()) for pair in _ZONES.replace("\n", " ").split(",")
)

# Each cancelled, unshipped shipment's cell: its store's promised local day.
_CANCELLED = f"""
WITH zones(marketplace, zone) AS (VALUES {_ZONE_ROWS}),
cancelled AS (
    SELECT r.tenant_id, r.platform, r.store_id, r.marketplace,
           ((r.payload->>'promised_ship_by')::timestamptz
              AT TIME ZONE coalesce(s.timezone, z.zone, 'UTC'))::date AS local_date
    FROM events_raw r
    LEFT JOIN store_timezones s ON s.tenant_id = r.tenant_id AND s.store_id = r.store_id
    LEFT JOIN zones z ON z.marketplace = upper(r.marketplace)
    WHERE r.type = 'shipment'
      AND (r.payload->>'cancelled_by_seller_before_ship')::boolean
      AND r.payload->>'shipped_at' IS NULL
)
SELECT tenant_id, platform, store_id, marketplace, local_date, count(*) AS shipments
FROM cancelled GROUP BY tenant_id, platform, store_id, marketplace, local_date
"""
_SAME_CELL = (
    "m.tenant_id = c.tenant_id AND m.local_date = c.local_date AND m.platform = c.platform "
    "AND m.store_id = c.store_id AND m.marketplace = c.marketplace AND m.currency = '' "
    "AND m.measure IN ('shipments_due', 'shipments_unshipped')"
)


def _take_back(sign: str) -> None:
    for table, per_sku in (("daily_measures", " AND m.sku = ''"), ("daily_store_measures", "")):
        op.execute(
            f"UPDATE {table} m SET value = m.value {sign} c.shipments "
            f"FROM ({_CANCELLED}) c WHERE {_SAME_CELL}{per_sku}"
        )


def upgrade() -> None:
    _take_back("-")


def downgrade() -> None:
    _take_back("+")
