"""How each available KPI is computed from the summed inputs of a bucket.

Inputs are sums over the whole bucket in the reporting currency (or counts); a KPI is
null when an input it needs is null (no FX rate, no unit cost) or a denominator is
zero, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Context, Decimal

Value = Decimal | None
Inputs = dict[str, Value]

SALES_INPUTS = frozenset({"gmv", "units"})
ORDER_INPUTS = frozenset({"orders", "orders_all", "orders_cancelled"})
COGS_INPUTS = frozenset({"cogs"})
# Inputs that are amounts of money, converted with FX rates: only they can lack a rate.
MONEY_INPUTS = frozenset({"gmv", "cogs", "refund_amount", "fee_amount", "ad_cost", "ad_sales"})
# Not sums: computed per bucket from per-SKU-day snapshot rows (see service._inventory).
INVENTORY_INPUTS = frozenset({"on_hand_last", "sku_days", "stockout_sku_days"})
# Inputs a bucket may lack altogether, and then have no value, not zero: a bucket with
# no snapshot has no "units on hand on the last snapshot date".
_WITHOUT_ZERO = frozenset({"on_hand_last"})


def with_defaults(inputs: Inputs, names: set[str]) -> Inputs:
    """A bucket's inputs by name: what it has, else zero (nothing sold is 0 sold), or
    none for what only a snapshot says."""
    return {name: inputs.get(name, None if name in _WITHOUT_ZERO else Decimal(0)) for name in names}


# Units over the 30 days ending on a bucket's last day (see service._trailing_units).
TRAILING_INPUTS = frozenset({"units_30d"})
COVER_DAYS = Decimal(30)
# Shipment counts; "name@N" is the sum over the N days ending on a bucket's last day.
SHIPMENT_MEASURES = frozenset(
    {
        "shipments_due",
        "shipments_late",
        "shipments_shipped",
        "shipments_tracked",
        "deliveries",
        "deliveries_on_time",
    }
)
# Counted by the order's purchase date (see facts/attachments.py); "name@N" as above,
# and "orders_all@N" the orders placed over the same window.
ORDER_ATTACHED_MEASURES = frozenset({"orders_all", "orders_seller_cancelled", "orders_defective"})
CS_MEASURES = frozenset({"first_response_hours_sum", "first_responses", "csat_sum", "csat_count"})
ALL_DIMENSIONS = frozenset({"platform", "store", "marketplace", "sku", "category"})
STORE_DIMENSIONS = frozenset({"platform", "store", "marketplace"})


def dimensions_of(inputs: frozenset[str]) -> frozenset[str]:
    """The dimensions every one of these inputs can be split by."""
    allowed = set(ALL_DIMENSIONS)
    bases = {name.split("@")[0] for name in inputs}
    windowed = {name.split("@")[0] for name in inputs if "@" in name}
    if inputs & CS_MEASURES or bases & SHIPMENT_MEASURES or windowed & ORDER_ATTACHED_MEASURES:
        allowed &= STORE_DIMENSIONS
    return frozenset(allowed)


# Converted amounts carry more digits than Decimal's default 28 (an amount of 27 digits
# times a factor of 28): at 28, a refund subtracted from the GMV it refunds left 1e-27,
# and a margin of 1e27 over it. Every sum, difference and ratio of the answers is
# worked out here, where those are exact.
EXACT = Context(prec=120)


def div(numerator: Value, denominator: Value) -> Value:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return EXACT.divide(numerator, denominator)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values``."""
    summed = Decimal(0)
    for value in values:
        summed = EXACT.add(summed, value)
    return summed


def sub(left: Value, *rights: Value) -> Value:
    if left is None or any(r is None for r in rights):
        return None
    return EXACT.subtract(left, exact_sum(r for r in rights if r is not None))


@dataclass(frozen=True)
class Formula:
    inputs: frozenset[str]
    compute: Callable[[Inputs], Value]

    @property
    def dimensions(self) -> frozenset[str]:
        return dimensions_of(self.inputs)


def _f(inputs: set[str], compute: Callable[[Inputs], Value]) -> Formula:
    return Formula(frozenset(inputs), compute)


def _net_sales(i: Inputs) -> Value:
    return sub(i["gmv"], i["refund_amount"])


def _gross_profit(i: Inputs) -> Value:
    return sub(_net_sales(i), i["cogs"], i["fee_amount"])


def _net_profit(i: Inputs) -> Value:
    return sub(_gross_profit(i), i["ad_cost"])


_PROFIT = {"gmv", "refund_amount", "cogs", "fee_amount"}

FORMULAS: dict[str, Formula] = {
    "gmv": _f({"gmv"}, lambda i: i["gmv"]),
    "orders": _f({"orders"}, lambda i: i["orders"]),
    "units": _f({"units"}, lambda i: i["units"]),
    "aov": _f({"gmv", "orders"}, lambda i: div(i["gmv"], i["orders"])),
    "refunds": _f({"refund_amount"}, lambda i: i["refund_amount"]),
    "refund_rate": _f({"refund_amount", "gmv"}, lambda i: div(i["refund_amount"], i["gmv"])),
    "net_sales": _f({"gmv", "refund_amount"}, _net_sales),
    "cancel_rate": _f(
        {"orders_cancelled", "orders_all"}, lambda i: div(i["orders_cancelled"], i["orders_all"])
    ),
    "fees": _f({"fee_amount"}, lambda i: i["fee_amount"]),
    "cogs": _f({"cogs"}, lambda i: i["cogs"]),
    "gross_profit": _f(_PROFIT, _gross_profit),
    "gross_margin": _f(_PROFIT, lambda i: div(_gross_profit(i), _net_sales(i))),
    "ad_spend": _f({"ad_cost"}, lambda i: i["ad_cost"]),
    "ad_sales": _f({"ad_sales"}, lambda i: i["ad_sales"]),
    "impressions": _f({"impressions"}, lambda i: i["impressions"]),
    "clicks": _f({"clicks"}, lambda i: i["clicks"]),
    "ad_orders": _f({"ad_orders"}, lambda i: i["ad_orders"]),
    "net_profit": _f(_PROFIT | {"ad_cost"}, _net_profit),
    "net_margin": _f(_PROFIT | {"ad_cost"}, lambda i: div(_net_profit(i), _net_sales(i))),
    "acos": _f({"ad_cost", "ad_sales"}, lambda i: div(i["ad_cost"], i["ad_sales"])),
    "tacos": _f({"ad_cost", "gmv"}, lambda i: div(i["ad_cost"], i["gmv"])),
    "roas": _f({"ad_sales", "ad_cost"}, lambda i: div(i["ad_sales"], i["ad_cost"])),
    "ctr": _f({"clicks", "impressions"}, lambda i: div(i["clicks"], i["impressions"])),
    "cpc": _f({"ad_cost", "clicks"}, lambda i: div(i["ad_cost"], i["clicks"])),
    "ad_cvr": _f({"ad_orders", "clicks"}, lambda i: div(i["ad_orders"], i["clicks"])),
    "sessions": _f({"sessions"}, lambda i: i["sessions"]),
    "cvr": _f({"orders", "sessions"}, lambda i: div(i["orders"], i["sessions"])),
    "on_hand": _f({"on_hand_last"}, lambda i: i["on_hand_last"]),
    "days_of_cover": _f(
        {"on_hand_last", "units_30d"},
        lambda i: div(i["on_hand_last"], div(i["units_30d"], COVER_DAYS)),
    ),
    "sell_through": _f(
        {"units", "on_hand_last"},
        lambda i: div(
            i["units"],
            None
            if i["units"] is None or i["on_hand_last"] is None
            else exact_sum((i["units"], i["on_hand_last"])),
        ),
    ),
    "stockout_rate": _f(
        {"stockout_sku_days", "sku_days"}, lambda i: div(i["stockout_sku_days"], i["sku_days"])
    ),
    "late_shipment_rate": _f(
        {"shipments_late@10", "shipments_due@10"},
        lambda i: div(i["shipments_late@10"], i["shipments_due@10"]),
    ),
    "valid_tracking_rate": _f(
        {"shipments_tracked@30", "shipments_shipped@30"},
        lambda i: div(i["shipments_tracked@30"], i["shipments_shipped@30"]),
    ),
    "on_time_delivery_rate": _f(
        {"deliveries_on_time", "deliveries"},
        lambda i: div(i["deliveries_on_time"], i["deliveries"]),
    ),
    "pre_fulfillment_cancel_rate": _f(
        {"orders_seller_cancelled@7", "orders_all@7"},
        lambda i: div(i["orders_seller_cancelled@7"], i["orders_all@7"]),
    ),
    "order_defect_rate": _f(
        {"orders_defective@60", "orders_all@60"},
        lambda i: div(i["orders_defective@60"], i["orders_all@60"]),
    ),
    "first_response_hours": _f(
        {"first_response_hours_sum", "first_responses"},
        lambda i: div(i["first_response_hours_sum"], i["first_responses"]),
    ),
    "csat": _f({"csat_sum", "csat_count"}, lambda i: div(i["csat_sum"], i["csat_count"])),
}
