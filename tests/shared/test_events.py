"""Batch validation of pushed events: every bad event named by index, field and reason."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.events import (
    OFFSET_REASON,
    PAYLOAD_MODELS,
    TIMESTAMP_REASON,
    OrderLine,
    validate_batch,
)
from shared.money import CURRENCY_REASON, DECIMAL_REASON
from shared.time import FALLBACK_TIME_ZONE, MARKETPLACE_TIME_ZONES, local_date, time_zone_name


def order_line(**payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "amazon-US-1-1",
        "type": "order_line",
        "version": 1,
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": "2026-03-01T07:15:00Z",
        "payload": {
            "order_id": "111",
            "line_id": "1",
            "sku": "LAMP",
            "quantity": 2,
            "unit_price": {"amount": "12.34", "currency": "USD"},
            "status": "pending",
            "purchased_at": "2026-03-01T07:15:00Z",
        },
    }
    base["payload"].update(payload)
    return base


def another(event_type: str, **payload: Any) -> dict[str, Any]:
    """An event of ``event_type`` with ``payload``, the envelope of ``order_line``'s."""
    return {**order_line(), "type": event_type, "payload": payload}


def refund(amount: str, **extra: Any) -> dict[str, Any]:
    """A refund of ``amount`` USD for order 111."""
    money = {"amount": amount, "currency": "USD"}
    return another("refund", order_id="111", amount=money, refunded_at="2026-03-02T00:00:00Z",
                   **extra)  # fmt: skip


def test_valid_event_keeps_exact_decimals() -> None:
    events, errors = validate_batch([order_line()])
    assert errors == []
    payload = events[0].payload
    assert isinstance(payload, OrderLine)
    assert payload.unit_price.amount == Decimal("12.34")


def test_every_bad_event_is_named_with_field_and_reason() -> None:
    missing_sku = order_line()
    del missing_sku["payload"]["sku"]
    float_money = order_line(unit_price={"amount": 12.34, "currency": "USD"})
    naive_time = order_line(purchased_at="2026-03-01T07:15:00")
    unknown_type = copy.deepcopy(order_line())
    unknown_type["type"] = "order"
    bad_currency = order_line(discount={"amount": "1", "currency": "usd"})
    typo = order_line(shipping_prce={"amount": "1", "currency": "USD"})
    no_such_currency = order_line(unit_price={"amount": "1", "currency": "XYZ"})
    events, errors = validate_batch(
        [order_line(), missing_sku, float_money, naive_time, unknown_type, bad_currency, typo,
         no_such_currency]
    )  # fmt: skip
    assert events == []
    found = {(e.index, e.field, e.reason.split(" ")[0]) for e in errors}
    assert (1, "payload.sku", "required") in found
    assert (2, "payload.unit_price.amount", "must") in found
    assert any(e.index == 3 and e.field == "payload.purchased_at" for e in errors)
    assert any(e.index == 4 and e.field == "type" for e in errors)
    assert (5, "payload.discount.currency", "must") in found
    assert (7, "payload.unit_price.currency", "must") in found
    assert (6, "payload.shipping_prce", "unknown") in found
    assert not any(e.index == 0 for e in errors)


def test_envelope_errors_and_payload_errors_are_both_reported() -> None:
    no_source = order_line()
    del no_source["source"]
    bad_payload = order_line(quantity=0)
    _, errors = validate_batch([no_source, bad_payload])
    assert {(e.index, e.field) for e in errors} == {(0, "source"), (1, "payload.quantity")}


def test_an_event_with_a_bad_envelope_names_its_payload_errors_too() -> None:
    wrong_everywhere = order_line(quantity=0, purchased_at="2026-03-01")
    wrong_everywhere["source"]["marketplace"] = "ZZ"
    wrong_everywhere["version"] = 0
    unknown_type = order_line(quantity=0)
    unknown_type["type"] = "order"
    no_payload = order_line()
    no_payload["payload"] = "lines"
    no_payload["version"] = 0
    _, errors = validate_batch([order_line(), wrong_everywhere, unknown_type, no_payload])
    assert {(e.index, e.field) for e in errors} == {
        (1, "source.marketplace"),
        (1, "version"),
        (1, "payload.quantity"),
        (1, "payload.purchased_at"),
        # A payload is read only as the type it names: an unknown type has none to read.
        (2, "type"),
        (3, "payload"),
        (3, "version"),
    }


def fx_rate(**payload: Any) -> dict[str, Any]:
    """An fx_rate of 1 USD = 17 MXN; ``payload`` overrides its fields."""
    return {
        "event_id": "fx-1",
        "type": "fx_rate",
        "source": {"platform": "erp", "store_id": "erp", "marketplace": "US"},
        "occurred_at": "2026-03-01T00:00:00Z",
        "payload": {"date": "2026-03-01", "base": "USD", "quote": "MXN", "rate": "17", **payload},
    }


def test_fx_rate_must_be_positive() -> None:
    event = fx_rate(rate="0")
    _, errors = validate_batch([event])
    assert [(e.index, e.field) for e in errors] == [(0, "payload.rate")]


def test_local_date_uses_the_marketplace_time_zone() -> None:
    from datetime import UTC, datetime

    # 23:30 on 31 January in Los Angeles is already 1 February in UTC.
    instant = datetime(2026, 2, 1, 7, 30, tzinfo=UTC)
    assert local_date(instant, "US").isoformat() == "2026-01-31"
    assert local_date(instant, "JP").isoformat() == "2026-02-01"
    assert local_date(instant, "US", override="Asia/Tokyo").isoformat() == "2026-02-01"


def test_time_zones_are_iana_names_never_host_files() -> None:
    # Every zone the project cuts dates in by default is one.
    for name in (*MARKETPLACE_TIME_ZONES.values(), FALLBACK_TIME_ZONE, "US/Eastern", "Etc/GMT+5"):
        assert time_zone_name(name) == name
    for name in ("localtime", "posixrules", "Factory", "posix/UTC", "right/UTC", "", "Mars/Base"):
        with pytest.raises(ValueError, match="IANA"):
            time_zone_name(name)


def test_amounts_of_a_line_must_share_its_currency() -> None:
    _, errors = validate_batch([order_line(discount={"amount": "1.00", "currency": "MXN"})])
    assert [(e.index, e.field) for e in errors] == [(0, "payload.discount.currency")]
    assert "USD" in errors[0].reason
    # Every amount in another currency is named at once, even beside a bad unit price.
    three = {
        "shipping_price": {"amount": "1", "currency": "EUR"},
        "discount": {"amount": "1", "currency": "GBP"},
        "item_tax": {"amount": "1", "currency": "JPY"},
    }
    for unit_price in ("10.00", "ten", "-1"):
        line = order_line(**three, unit_price={"amount": unit_price, "currency": "USD"})
        _, errors = validate_batch([line])
        assert {e.field for e in errors} - {"payload.unit_price.amount"} == {
            "payload.shipping_price.currency",
            "payload.item_tax.currency",
            "payload.discount.currency",
        }, unit_price
    # Beside a negative amount of its own too.
    negative = order_line(shipping_price={"amount": "-1", "currency": "EUR"})
    _, errors = validate_batch([negative])
    assert {e.field for e in errors} == {
        "payload.shipping_price.amount",
        "payload.shipping_price.currency",
    }


def test_values_storage_or_the_calendar_cannot_hold_are_refused_at_the_door() -> None:
    """Each of these was once accepted, then failed in the metrics consumer and held up
    every event behind it."""
    nul_id = order_line()
    nul_id["event_id"] = "amazon\x00-1"
    huge_version = order_line()
    huge_version["version"] = 2**31
    broken = refund("1.00", reason="broken\x00")
    nul_platform = order_line()
    nul_platform["source"] = {**nul_platform["source"], "platform": "ama\x00zon"}
    snapshot = another(
        "inventory_snapshot", date="1969-12-31", sku="LAMP", warehouse="w", on_hand=1
    )
    batch = [
        order_line(),
        nul_id,
        huge_version,
        order_line(quantity=2**31),
        order_line(sku="LA\x00MP"),
        order_line(purchased_at="0001-01-01T00:00:00+14:00"),
        order_line(purchased_at="9999-12-31T23:59:59Z"),
        order_line(unit_price={"amount": "1000000000000000", "currency": "USD"}),
        broken,
        snapshot,
        nul_platform,
    ]
    events, errors = validate_batch(batch)
    assert events == []
    named = {(e.index, e.field): e.reason for e in errors}
    assert set(named) == {
        (1, "event_id"),
        (2, "version"),
        (3, "payload.quantity"),
        (4, "payload.sku"),
        (5, "payload.purchased_at"),
        (6, "payload.purchased_at"),
        (7, "payload.unit_price.amount"),
        (8, "payload.reason"),
        (9, "payload.date"),
        (10, "source.platform"),
    }, named
    assert "NUL" in named[(1, "event_id")] and "NUL" in named[(8, "payload.reason")]
    assert named[(5, "payload.purchased_at")] == "must be between 1970-01-01 and 2199-12-31"
    assert "10^15" in named[(7, "payload.unit_price.amount")]
    # The largest values that fit are still taken.
    edge = order_line(quantity=2**31 - 1, purchased_at="2199-12-31T09:59:59Z")
    edge["version"] = 2**31 - 1
    first = order_line(purchased_at="1970-01-01T00:00:00-12:00")
    assert validate_batch([edge, first])[1] == []
    # An instant whose date is past the calendar's end in some zone (Tokyo's, say, or
    # a store's own) would count on a day no question can name.
    beyond = [
        order_line(purchased_at="2199-12-31T10:00:00Z"),
        order_line(purchased_at="2199-12-31T20:00:00-12:00"),
        order_line(purchased_at="1970-01-01T11:59:59Z"),
    ]
    assert _reasons(beyond) == {
        (n, "payload.purchased_at"): "must be between 1970-01-01T12:00:00Z and "
        "2199-12-31T09:59:59Z, so that its date is between 1970-01-01 and 2199-12-31 in "
        "every time zone"
        for n in range(3)
    }


def test_a_marketplace_is_an_iso_country_with_its_own_time_zone() -> None:
    unknown, amazon_uk = order_line(), order_line()
    unknown["source"] = {**unknown["source"], "marketplace": "ZZ"}
    amazon_uk["source"] = {**amazon_uk["source"], "marketplace": "UK"}
    events, errors = validate_batch([order_line(), unknown, amazon_uk])
    assert events == []
    named = {(e.index, e.field): e.reason for e in errors}
    assert named == {
        (1, "source.marketplace"): "must be an ISO 3166 country code such as US",
        (2, "source.marketplace"): "UK is no ISO 3166 code: the United Kingdom is GB",
    }
    # Beyond the contract's seven: 23:30 UTC on 31 March is 1 April in Sydney, not in UTC.
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert local_date(late, "AU") == date(2026, 4, 1)
    assert local_date(late, "AR") == date(2026, 3, 31)


def test_prices_costs_and_refunds_are_not_negative_but_fees_may_be() -> None:
    negative_refund = refund("-30.00")
    fee_credit = another(
        "fee",
        fee_type="fulfillment",
        amount={"amount": "-1.25", "currency": "USD"},
        charged_at="2026-03-02T00:00:00Z",
    )
    batch = [
        order_line(unit_price={"amount": "-100.00", "currency": "USD"}),
        order_line(discount={"amount": "-50.00", "currency": "USD"}),
        negative_refund,
    ]
    events, errors = validate_batch(batch)
    assert events == []
    assert {(e.index, e.field, e.reason) for e in errors} == {
        (0, "payload.unit_price.amount", "must not be negative"),
        (1, "payload.discount.amount", "must not be negative"),
        (2, "payload.amount.amount", "must not be negative"),
    }
    # A marketplace crediting a fee back is a negative fee.
    assert validate_batch([fee_credit])[1] == []


def _reasons(batch: list[Any]) -> dict[tuple[int | None, str], str]:
    events, errors = validate_batch(batch)
    assert events == []
    return {(e.index, e.field): e.reason for e in errors}


def test_types_are_strict_where_lax_parsing_would_guess() -> None:
    shipped = {"order_id": "111", "promised_ship_by": "2026-03-02T00:00:00Z"}
    batch = [
        another("shipment", **shipped, tracking_valid="yes"),
        another("shipment", **shipped, cancelled_by_seller_before_ship=1),
        another("traffic", date="2026-03-02T00:00:00Z", sku="LAMP", sessions=1),
        another("traffic", date=1772409600, sku="LAMP", sessions=1),
        order_line(purchased_at="2026-03-01"),
        order_line(purchased_at=1772409600),
        order_line(unit_price={"amount": "1e-13", "currency": "USD"}),
        order_line(unit_price={"amount": " 10", "currency": "USD"}),
        another("traffic", date="2026-03-02", sku="LAMP", sessions=2**31),
        another(
            "ad_spend",
            date="2026-03-02",
            campaign_id="c",
            impressions=2**63,
            clicks=0,
            cost={"amount": "1", "currency": "USD"},
            attributed_sales={"amount": "0", "currency": "USD"},
            attributed_orders=0,
        ),
    ]
    assert _reasons(batch) == {
        (0, "payload.tracking_valid"): "must be true or false",
        (1, "payload.cancelled_by_seller_before_ship"): "must be true or false",
        (2, "payload.date"): "must be a date such as 2026-03-01",
        (3, "payload.date"): "must be a date such as 2026-03-01",
        (4, "payload.purchased_at"): TIMESTAMP_REASON,
        (5, "payload.purchased_at"): TIMESTAMP_REASON,
        (6, "payload.unit_price.amount"): "must have at most 12 decimal places",
        (7, "payload.unit_price.amount"): DECIMAL_REASON,
        (8, "payload.sessions"): "must be at most 2147483647",
        (9, "payload.impressions"): "must be at most 2147483647",
    }
    # What the strictness keeps: a sign, a bare fraction, an exponent as Java writes it.
    fine = [
        order_line(unit_price={"amount": a, "currency": "USD"})
        for a in ("10", "+1.5", ".5", "1E+3", "1E-7", "0.100000000000000")
    ]
    assert validate_batch(fine)[1] == []


def test_a_timestamp_of_digits_is_refused_not_read_as_seconds_since_1970() -> None:
    # A compact date (20260301) read as seconds would count the sale on 1970-08-23.
    digits = ["20260301", "1772395200", "1772395200.5", "1772395200000", "-1", " 20260301"]
    batch = [order_line(purchased_at=d) for d in digits]
    batch.append({**order_line(), "occurred_at": "20260301"})
    assert _reasons(batch) == {
        **{(i, "payload.purchased_at"): TIMESTAMP_REASON for i in range(len(digits))},
        (len(digits), "occurred_at"): TIMESTAMP_REASON,
    }
    written = ["2026-03-01T07:15:00Z", "2026-03-01 07:15:00+08:00", "2026-03-01t07:15:00.5-03:00"]
    assert validate_batch([order_line(purchased_at=w) for w in written])[1] == []


def test_amounts_travel_in_digits_as_they_were_read() -> None:
    # str() of 0.0000001 is "1E-7": the consumer must read back what ingest accepted.
    amounts = ["0.0000001", "1E+3", "12.30", "0.00", "-0.000000000001"]
    events, errors = validate_batch(
        [
            another(
                "fee",
                fee_type="other",
                amount={"amount": a, "currency": "USD"},
                charged_at="2026-03-02T00:00:00Z",
            )
            for a in amounts
        ]
    )
    assert errors == []
    sent = [event.payload.model_dump(mode="json")["amount"]["amount"] for event in events]
    assert sent == ["0.0000001", "1000", "12.30", "0.00", "-0.000000000001"]
    for event in events:
        read = PAYLOAD_MODELS["fee"].model_validate(event.payload.model_dump(mode="json"))
        assert read == event.payload


def test_what_is_no_object_and_unknown_envelope_fields_are_named() -> None:
    misspelt = {**order_line(), "verison": 2}
    wrong_source = {**order_line(), "source": {**order_line()["source"], "region": "NA"}}
    assert _reasons([1, "x", misspelt, wrong_source, order_line(unit_price="12.34")]) == {
        (0, "event"): "must be a JSON object",
        (1, "event"): "must be a JSON object",
        (2, "verison"): "unknown field",
        (3, "source.region"): "unknown field",
        (4, "payload.unit_price"): "must be a JSON object",
    }
    # A tenant in the event is ignored: the tenant is the token's.
    events, errors = validate_batch([{**order_line(), "tenant_id": "someone-else"}])
    assert errors == [] and len(events) == 1


def test_times_that_contradict_each_other_are_refused() -> None:
    opened = {"ticket_id": "t1", "opened_at": "2026-03-02T10:00:00Z"}
    batch = [
        another("cs_ticket", **opened, first_response_at="2026-03-02T09:00:00Z"),
        another("cs_ticket", **opened, resolved_at="2026-03-01T10:00:00Z"),
        another(
            "shipment",
            order_id="111",
            promised_ship_by="2026-03-02T00:00:00Z",
            shipped_at="2026-03-03T00:00:00Z",
            delivered_at="2026-03-02T23:00:00Z",
        ),
    ]
    cancelled = {
        "order_id": "112",
        "promised_ship_by": "2026-03-02T00:00:00Z",
        "cancelled_by_seller_before_ship": True,
    }
    batch += [
        another("shipment", **cancelled, shipped_at="2026-03-03T00:00:00Z"),
        another("shipment", **cancelled, delivered_at="2026-03-04T00:00:00Z"),
    ]
    assert _reasons(batch) == {
        (0, "payload.first_response_at"): "first_response_at must not be before opened_at",
        (1, "payload.resolved_at"): "resolved_at must not be before opened_at",
        (2, "payload.delivered_at"): "delivered_at must not be before shipped_at",
        (3, "payload.shipped_at"): (
            "shipped_at must be absent when cancelled_by_seller_before_ship is true"
        ),
        (4, "payload.delivered_at"): (
            "delivered_at must be absent when cancelled_by_seller_before_ship is true"
        ),
    }
    # Shipped, then not cancelled, is a shipment as any other.
    shipped = {**cancelled, "cancelled_by_seller_before_ship": False}
    shipped = another("shipment", **shipped, shipped_at="2026-03-03T00:00:00Z")
    assert validate_batch([shipped])[1] == []
    same_instant = another("cs_ticket", **opened, first_response_at=opened["opened_at"])
    assert validate_batch([same_instant])[1] == []


def test_checks_between_fields_are_named_beside_the_fields_errors() -> None:
    """An ERP fixes a refused event in one round: the fields that are valid are still
    checked against each other when another field is wrong."""
    opened = {"ticket_id": "t1", "opened_at": "2026-03-02T10:00:00Z"}
    batch = [
        another("cs_ticket", **opened, first_response_at="2026-03-02T09:00:00Z", csat=6),
        another(
            "shipment",
            order_id="111",
            promised_ship_by="2026-03-02T00:00:00Z",
            shipped_at="2026-03-03T00:00:00Z",
            delivered_at="2026-03-02T23:00:00Z",
            carrier="x" * 2001,
        ),
        order_line(quantity=-1, shipping_price={"amount": "1.00", "currency": "EUR"}),
        # The unit price's amount is wrong, its currency is not: the check reads that.
        order_line(
            unit_price={"amount": "-1", "currency": "USD"},
            shipping_price={"amount": "1.00", "currency": "EUR"},
        ),
        fx_rate(quote="USD", rate="2", date="2026-02-30"),
        another("cs_ticket", ticket_id="t2", first_response_at="2026-03-02T09:00:00Z"),
        # An unknown key in an amount, its own or the unit price's: currencies read.
        order_line(discount={"amount": "1", "currency": "EUR", "note": "x"}),
        order_line(
            unit_price={"amount": "5", "currency": "USD", "foo": 1},
            discount={"amount": "1", "currency": "EUR"},
        ),
    ]
    reasons = _reasons(batch)
    assert reasons == {
        (0, "payload.csat"): "must be at most 5",
        (0, "payload.first_response_at"): "first_response_at must not be before opened_at",
        (1, "payload.carrier"): reasons[1, "payload.carrier"],
        (1, "payload.delivered_at"): "delivered_at must not be before shipped_at",
        (2, "payload.quantity"): reasons[2, "payload.quantity"],
        (2, "payload.shipping_price.currency"): "shipping_price.currency must equal "
        "unit_price.currency (USD)",
        (3, "payload.unit_price.amount"): reasons[3, "payload.unit_price.amount"],
        (3, "payload.shipping_price.currency"): "shipping_price.currency must equal "
        "unit_price.currency (USD)",
        (4, "payload.date"): reasons[4, "payload.date"],
        (4, "payload.rate"): "rate must be 1 when quote is base",
        (5, "payload.opened_at"): "required",
        (6, "payload.discount.note"): "unknown field",
        (6, "payload.discount.currency"): "discount.currency must equal unit_price.currency (USD)",
        (7, "payload.unit_price.foo"): "unknown field",
        (7, "payload.discount.currency"): "discount.currency must equal unit_price.currency (USD)",
    }


def test_each_conflict_and_a_negative_amount_beside_a_bad_currency_are_all_named() -> None:
    """An ERP fixes everything in one round: a negative amount went unnamed beside a
    bad currency, and only the first of two conflicts between fields was named."""
    opened = {"ticket_id": "t", "opened_at": "2026-03-02T20:00:00Z"}
    shipped = {"order_id": "111", "promised_ship_by": "2026-03-02T00:00:00Z"}
    unpriced = order_line(
        shipping_price={"amount": "1", "currency": "USD"},
        discount={"amount": "1", "currency": "EUR"},
    )
    del unpriced["payload"]["unit_price"]
    batch = [
        another("refund", order_id="111", amount={"amount": "-1", "currency": "usd"},
                refunded_at="2026-03-02T00:00:00Z"),
        another("cs_ticket", **opened, first_response_at="2026-03-02T19:00:00Z",
                resolved_at="2026-03-02T18:00:00Z"),
        another("shipment", **shipped, shipped_at="2026-03-03T00:00:00Z",
                delivered_at="2026-03-04T00:00:00Z", cancelled_by_seller_before_ship=True),
        unpriced,
    ]  # fmt: skip
    cancelled = "must be absent when cancelled_by_seller_before_ship is true"
    assert _reasons(batch) == {
        (0, "payload.amount.amount"): "must not be negative",
        (0, "payload.amount.currency"): CURRENCY_REASON,
        (1, "payload.first_response_at"): "first_response_at must not be before opened_at",
        (1, "payload.resolved_at"): "resolved_at must not be before opened_at",
        (2, "payload.shipped_at"): f"shipped_at {cancelled}",
        (2, "payload.delivered_at"): f"delivered_at {cancelled}",
        (3, "payload.unit_price"): "required",
        (3, "payload.discount.currency"): "discount.currency must equal "
        "shipping_price.currency (USD)",
    }


def test_amounts_are_decimal_strings_of_ascii_digits() -> None:
    """Decimal() reads full-width and Arabic-Indic digits, and JSON has whole numbers: CONTRACT §3 writes
    an amount as a decimal string, in the digits every ledger uses."""
    lines = [
        order_line(unit_price={"amount": amount, "currency": "USD"})
        for amount in ("\uff11\uff12", "\u0661\u0662", "1\u066b5", 10, "12.34\n", "12")
    ]
    events, errors = validate_batch(lines)
    assert events == []
    assert [(e.index, e.field, e.reason) for e in errors] == [
        (index, "payload.unit_price.amount", 'must be a decimal string such as "12.34"')
        for index in range(5)
    ]
    # The contract writes a rate as no Money: a whole number is exact, and taken.
    events, errors = validate_batch([fx_rate(rate=150), fx_rate(rate="\uff11\uff12")])
    assert [(e.index, e.field) for e in errors] == [(1, "payload.rate")]
    events, _ = validate_batch([fx_rate(rate=150)])
    assert events[0].payload.model_dump(mode="json")["rate"] == "150"


def test_a_currency_has_a_rate_of_one_to_itself() -> None:
    identities = [fx_rate(quote="USD", rate="2"), fx_rate(quote="USD", rate="1.00")]
    _, errors = validate_batch(identities)
    assert [(e.index, e.field, e.reason) for e in errors] == [
        (0, "payload.rate", "rate must be 1 when quote is base")
    ]


def test_free_text_is_capped_as_identifiers_are() -> None:
    """A refund's reason is what a person wrote: a pasted document is a mistake, and it
    would be kept, relayed and exported with every version of the event."""
    longest = refund("1.00", reason="r" * 2_000)
    too_long = refund("1.00", reason="r" * 2_001)
    events, errors = validate_batch([longest, too_long])
    assert events == []
    assert [(e.index, e.field, e.reason) for e in errors] == [
        (1, "payload.reason", "must be at most 2000 characters")
    ]
    assert validate_batch([longest])[1] == []


def test_bounds_and_calendars_are_said_in_the_apis_words() -> None:
    """One bound reads one way for every count, and a timestamp field that cannot be
    read says what it takes, not pydantic's "a valid datetime or date"."""
    events, errors = validate_batch(
        [
            order_line(quantity=0),
            order_line(quantity=2**31),
            order_line(purchased_at="2026-02-29T07:15:00Z"),
            another("inventory_snapshot", date="2026-02-30", sku="A", warehouse="W", on_hand=1),
        ]
    )
    assert events == []
    assert [(e.index, e.field, e.reason) for e in errors] == [
        (0, "payload.quantity", "must be more than 0"),
        (1, "payload.quantity", "must be at most 2147483647"),
        (2, "payload.purchased_at", f"{TIMESTAMP_REASON} (day value is outside expected range)"),
        (
            3,
            "payload.date",
            "must be a date such as 2026-03-01 (day value is outside expected range)",
        ),
    ]


def test_an_optional_text_left_blank_is_absent() -> None:
    """As an empty CSV cell is: an ERP's "" is no category, not a category named ""."""
    events, errors = validate_batch(
        [order_line(category=""), order_line(category="  "), refund("1.00", sku="")]
    )
    assert errors == []
    assert [event.payload.model_dump()["category"] for event in events[:2]] == [None, None]
    assert events[2].payload.model_dump()["sku"] is None
    # A required one is still required.
    _, refused = validate_batch([order_line(sku="")])
    assert [(e.field, e.reason) for e in refused] == [("payload.sku", "must not be blank")]


def test_pydantics_words_are_said_in_the_apis() -> None:
    """What a person pushing an event can act on: what the value is written as."""
    batch = [
        order_line(quantity="3"),
        order_line(quantity=1.5),
        order_line(quantity=3.0),
        {**order_line(), "event_id": None},
        {**order_line(), "event_id": 12},
        order_line(sku="   "),
    ]
    assert _reasons(batch) == {
        (0, "payload.quantity"): 'must be a whole number written as a JSON number (3, not "3")',
        (1, "payload.quantity"): "must be a whole number written without a fraction (3, not 3.0)",
        (2, "payload.quantity"): "must be a whole number written without a fraction (3, not 3.0)",
        (3, "event_id"): "must not be null",
        (4, "event_id"): "must be a string",
        (5, "payload.sku"): "must not be blank",
    }


def test_a_value_outside_an_enumeration_lists_the_values_taken() -> None:
    assert _reasons([order_line(status="lost"), {**order_line(), "type": "sale"}]) == {
        (0, "payload.status"): "must be one of 'pending', 'shipped', 'delivered' or 'cancelled'",
        (1, "type"): "must be one of 'order_line', 'refund', 'fee', 'ad_spend', 'traffic', "
        "'inventory_snapshot', 'unit_cost', 'shipment', 'order_defect', 'cs_ticket' or 'fx_rate'",
    }


def test_an_offset_no_time_zone_has_is_refused() -> None:
    """RFC 3339 allows offsets to ±23:59; no zone is beyond -12:00 or +14:00, so such
    an offset is a typo that would move an order to another day."""
    stamps = ["+23:59", "-23:59", "+14:01", "-12:30", "+14:00", "-12:00", "+05:45"]
    batch = [order_line(purchased_at=f"2026-11-01T12:00:00{offset}") for offset in stamps]
    _, errors = validate_batch(batch)
    assert [(e.index, e.field, e.reason) for e in errors] == [
        (
            index,
            "payload.purchased_at",
            "must have an offset from -12:00 to +14:00 (no time zone is further)",
        )
        for index in range(4)
    ]


def test_a_clock_out_of_range_says_which_part() -> None:
    """The parser calls hour 24 or second 60 "unexpected extra characters"."""
    stamps = ["24:00:00Z", "23:60:00Z", "23:59:60Z", "07:15:00+25:00", "07:15:00+08:61",
              "24:00:00+08", "07:15:00+15", "07:15:00+8"]  # fmt: skip
    batch = [order_line(purchased_at=f"2026-11-01T{clock}") for clock in stamps]
    reasons = _reasons(batch)
    assert reasons == {
        (0, "payload.purchased_at"): f"{TIMESTAMP_REASON} (hour 24 is beyond 23)",
        (1, "payload.purchased_at"): f"{TIMESTAMP_REASON} (minute 60 is beyond 59)",
        (2, "payload.purchased_at"): f"{TIMESTAMP_REASON} (second 60 is beyond 59)",
        (3, "payload.purchased_at"): OFFSET_REASON,
        (4, "payload.purchased_at"): OFFSET_REASON,
        (5, "payload.purchased_at"): f"{TIMESTAMP_REASON} (hour 24 is beyond 23)",
        (6, "payload.purchased_at"): OFFSET_REASON,
        (7, "payload.purchased_at"): reasons[7, "payload.purchased_at"],
    }
    assert reasons[7, "payload.purchased_at"].startswith(TIMESTAMP_REASON)
    # ISO 8601's looser forms, as they mean it: an offset of hours alone among them.
    events, errors = validate_batch(
        [
            order_line(purchased_at="2026-11-01T23:59:59.5+0800"),
            order_line(purchased_at="2026-11-01t07:15z"),
            order_line(purchased_at="2026-11-01T15:15+08"),
            order_line(purchased_at="2026-11-01T02:15:00,25-05"),
        ]
    )
    assert errors == []
    lines = [event.payload for event in events if isinstance(event.payload, OrderLine)]
    assert [line.purchased_at.isoformat() for line in lines] == [
        "2026-11-01T23:59:59.500000+08:00",
        "2026-11-01T07:15:00+00:00",
        "2026-11-01T15:15:00+08:00",
        "2026-11-01T02:15:00.250000-05:00",
    ]


def test_identifiers_are_bounded_in_bytes_as_the_facts_keep_them() -> None:
    """256 characters are 1,024 bytes of emoji: metrics keeps four identifiers and the
    platform in one index entry, so each is at most 512 bytes of UTF-8 too."""
    widest = "店" * 170  # 510 bytes
    fits = order_line(order_id=widest, line_id=widest, sku=widest, category=widest)
    fits["source"] = {"platform": "🛒" * 64, "store_id": widest, "marketplace": "US"}
    events, errors = validate_batch([fits])
    assert errors == [] and isinstance(events[0].payload, OrderLine)
    assert events[0].payload.sku == widest
    too_wide = "店" * 171
    assert _reasons(
        [
            order_line(sku=too_wide),
            {**order_line(), "source": {**order_line()["source"], "store_id": "😀" * 129}},
            another(
                "inventory_snapshot", date="2026-03-01", sku="A", warehouse=too_wide, on_hand=1
            ),
        ]
    ) == {
        (0, "payload.sku"): "must be at most 512 bytes in UTF-8 (256 characters of ASCII, "
        "170 of Chinese)",
        (1, "source.store_id"): "must be at most 512 bytes in UTF-8 (256 characters of "
        "ASCII, 170 of Chinese)",
        (2, "payload.warehouse"): "must be at most 512 bytes in UTF-8 (256 characters of "
        "ASCII, 170 of Chinese)",
    }


def test_zones_postgresql_reads_as_fixed_abbreviations_are_refused() -> None:
    """'CET' is a zone with summer time to Python and +01:00 all year to PostgreSQL."""
    for name in ("CET", "EET", "MET", "WET"):
        with pytest.raises(ValueError, match="Europe/Paris"):
            time_zone_name(name)
    assert time_zone_name("Europe/Paris") == "Europe/Paris"
    assert time_zone_name("UTC") == "UTC"
