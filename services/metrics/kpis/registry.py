"""The one registry of KPI definitions: the query engine, the catalog and the docs read it.

CONTRACT §4 defines every KPI; ``available`` says which the engine computes today.
A KPI that is not available yet is refused by name, never answered with a zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.metrics.kpis.formulas import FORMULAS
from services.metrics.settings.schemas import KpiSettings


@dataclass(frozen=True)
class KpiDefinition:
    id: str
    name: str
    unit: str  # money, count, ratio, hours, score, days
    direction: str  # up: higher is better; down: lower is better
    description: str

    @property
    def available(self) -> bool:
        return self.id in FORMULAS


_DEFINITIONS = [
    KpiDefinition("gmv", "GMV", "money", "up",
                  "Σ quantity × unit_price + shipping_price − discount of live lines, by purchase date; tax excluded."),
    KpiDefinition("orders", "Orders", "count", "up",
                  "Distinct orders (platform, store, order id) with at least one live line, dated by their earliest line."),
    KpiDefinition("units", "Units", "count", "up", "Σ quantity of live lines, by purchase date."),
    KpiDefinition("aov", "Average order value", "money", "up", "gmv / orders over the whole bucket."),
    KpiDefinition("refunds", "Refunds", "money", "down", "Σ refund amount by refunded_at."),
    KpiDefinition("refund_rate", "Refund rate", "ratio", "down", "refunds / gmv."),
    KpiDefinition("net_sales", "Net sales", "money", "up", "gmv − refunds."),
    KpiDefinition("cancel_rate", "Cancel rate", "ratio", "down", "Cancelled orders (every line cancelled) / all orders placed; by SKU or category, of the orders holding it."),
    KpiDefinition("fees", "Fees", "money", "down", "Σ fee amounts by charged_at."),
    KpiDefinition("cogs", "COGS", "money", "down", "Σ units × unit cost effective at purchase."),
    KpiDefinition("gross_profit", "Gross profit", "money", "up", "net_sales − cogs − fees."),
    KpiDefinition("gross_margin", "Gross margin", "ratio", "up", "gross_profit / net_sales."),
    KpiDefinition("ad_spend", "Ad spend", "money", "down", "Σ ad cost by date."),
    KpiDefinition("ad_sales", "Ad sales", "money", "up", "Σ attributed sales by date."),
    KpiDefinition("impressions", "Impressions", "count", "up", "Σ ad impressions by date."),
    KpiDefinition("clicks", "Clicks", "count", "up", "Σ ad clicks by date."),
    KpiDefinition("ad_orders", "Ad orders", "count", "up", "Σ attributed orders by date."),
    KpiDefinition("net_profit", "Net profit", "money", "up", "gross_profit − ad_spend."),
    KpiDefinition("net_margin", "Net margin", "ratio", "up", "net_profit / net_sales."),
    KpiDefinition("acos", "ACoS", "ratio", "down", "ad_spend / ad_sales."),
    KpiDefinition("tacos", "TACoS", "ratio", "down", "ad_spend / gmv."),
    KpiDefinition("roas", "ROAS", "ratio", "up", "ad_sales / ad_spend."),
    KpiDefinition("ctr", "CTR", "ratio", "up", "clicks / impressions."),
    KpiDefinition("cpc", "CPC", "money", "down", "ad_spend / clicks."),
    KpiDefinition("ad_cvr", "Ad conversion rate", "ratio", "up", "ad_orders / clicks."),
    KpiDefinition("sessions", "Sessions", "count", "up", "Σ sessions."),
    KpiDefinition("cvr", "Conversion rate", "ratio", "up", "orders / sessions."),
    KpiDefinition("on_hand", "Units on hand", "count", "up", "Units on hand on the last snapshot date in the period."),
    KpiDefinition("days_of_cover", "Days of cover", "days", "up", "on_hand / mean daily units over the 30 days ending at the period's end."),
    KpiDefinition("sell_through", "Sell-through", "ratio", "up", "units / (units + on_hand)."),
    KpiDefinition("stockout_rate", "Stockout rate", "ratio", "down", "SKU-days with on_hand = 0 / SKU-days snapshotted."),
    KpiDefinition("late_shipment_rate", "Late shipment rate", "ratio", "down", "Shipments shipped after promised_ship_by (or not shipped by now) / shipments due (shipped, or promised by now), by promised_ship_by; one the seller cancelled before shipping is not due, nor one not shipped whose promise is still to come. 10-day window."),
    KpiDefinition("valid_tracking_rate", "Valid tracking rate", "ratio", "up", "Shipped with valid tracking / shipped, by shipped_at; 30-day window."),
    KpiDefinition("on_time_delivery_rate", "On-time delivery rate", "ratio", "up", "Delivered by promised_delivery_by / delivered, by delivered_at."),
    KpiDefinition("pre_fulfillment_cancel_rate", "Pre-fulfillment cancel rate", "ratio", "down", "Orders with a shipment cancelled_by_seller_before_ship / orders placed (cancelled or not), by purchased_at; 7-day window."),
    KpiDefinition("order_defect_rate", "Order defect rate", "ratio", "down", "Orders with at least one order_defect / orders placed (cancelled or not), by purchased_at; 60-day window."),
    KpiDefinition("first_response_hours", "First response time", "hours", "down", "Mean hours from opened_at to first_response_at."),
    KpiDefinition("csat", "CSAT", "score", "up", "Mean csat (1-5)."),
]  # fmt: skip

KPIS: dict[str, KpiDefinition] = {k.id: k for k in _DEFINITIONS}


def describe(definition: KpiDefinition, settings: KpiSettings) -> str:
    """The definition as this tenant's settings make it."""
    if definition.id == "refunds" and settings.refunds_by == "purchase_date":
        return (
            "Σ refund amount by the order's purchase date, converted at that date's rate "
            "(this tenant's settings)."
        )
    if definition.id != "gmv":
        return definition.description
    shipping = "+ shipping_price " if settings.gmv_includes_shipping else ""
    tax = "tax included" if settings.gmv_includes_tax else "tax excluded"
    excluded = "" if settings.gmv_includes_shipping else "; shipping excluded"
    return (
        f"Σ quantity × unit_price {shipping}− discount of live lines, by purchase date; "
        f"{tax}{excluded} (this tenant's settings)."
    )


def reference() -> str:
    """The KPIs as a Markdown table, for the API documents: the same definitions the
    engine computes and the catalog lists (with the default settings)."""
    rows = [
        f"| `{k.id}` | {k.name} | {k.unit} | {k.description} |"
        for k in KPIS.values()
        if k.available
    ]
    return "\n".join(["| id | name | unit | definition |", "|---|---|---|---|", *rows])
