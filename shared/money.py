"""Money: a decimal amount with its currency. Never float."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from shared.validation_context import accepting

# ISO 4217 codes in use (and a few withdrawn lately, for history), plus CNH, the
# offshore yuan Chinese sellers are paid in. A code outside it is a typo, not a currency
# whose rate is merely missing.
_ISO_4217 = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNH CNY COP COU CRC CUC CUP CVE CZK DJF DKK
DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR
ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD
OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU
UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
CURRENCIES = frozenset(_ISO_4217.split())
CURRENCY_REASON = "must be an ISO 4217 currency code such as USD"
AMOUNT_DIGITS = 15


# ASCII digits with an optional sign, fraction and exponent: what an ERP or a
# marketplace writes (Java's BigDecimal writes "1E-7"). Spaces, "NaN", "Infinity" and
# other scripts' digits (full-width, Arabic-Indic: Decimal reads them) are no amount.
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
DECIMAL_REASON = 'must be a decimal string such as "12.34"'
# Finer than any price, cost or rate; a longer fraction would be a float's noise, and
# one of thousands of digits more than PostgreSQL's numeric keeps.
MAX_DECIMAL_PLACES = 12


def parse_decimal_string(value: object, info: ValidationInfo) -> Decimal:
    """A decimal from a string, as CONTRACT §3 writes amounts; JSON numbers are refused
    (a float is lossy, and an ERP that sends 10 would send 10.5 next). Read back
    (``info.context`` says ``stored``), an amount accepted once is not refused again."""
    if isinstance(value, Decimal) and value.is_finite():
        result = value
    elif (isinstance(value, str) and _DECIMAL.fullmatch(value)) or (
        isinstance(value, int) and not isinstance(value, bool) and not accepting(info)
    ):
        result = Decimal(value)
    else:
        raise ValueError(DECIMAL_REASON)
    # Read from the digits, not computed: arithmetic on "1e999999999" would overflow.
    _, digits, exponent = result.as_tuple()
    assert isinstance(exponent, int)  # a finite decimal
    if not any(digits):
        # A zero keeps its places when they are few: "0.00" stays "0.00".
        return result if -MAX_DECIMAL_PLACES <= exponent <= 0 else Decimal(0)
    if result.adjusted() >= AMOUNT_DIGITS:
        # Beyond any real amount, and past what a float answer can say to the cent.
        raise ValueError("must be less than 10^15 in absolute value")
    # Written places past the limit may be trailing zeros ("1.50000000000"), which count not.
    if -exponent > MAX_DECIMAL_PLACES and accepting(info):
        places = -exponent - (len(digits) - len("".join(map(str, digits)).rstrip("0")))
        if places > MAX_DECIMAL_PLACES:
            raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return result


def parse_decimal(value: object, info: ValidationInfo) -> Decimal:
    """As :func:`parse_decimal_string`, and a JSON whole number too (exact): for figures
    the contract writes as no Money, such as a rate."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return parse_decimal_string(value, info)


def plain(value: Decimal) -> str:
    """The decimal written out in digits, never with an exponent ("0.0000001", not
    "1E-7"), as every reader of an event expects it."""
    return format(value, "f")


def is_currency(value: object) -> bool:
    return isinstance(value, str) and value in CURRENCIES


def _currency(value: object) -> str:
    if not is_currency(value):
        raise ValueError(CURRENCY_REASON)
    assert isinstance(value, str)
    return value


# What the API document says of them, for client generators (pydantic cannot see
# through the validators).
_DECIMAL_SCHEMA = {
    "type": "string",
    "pattern": f"^{_DECIMAL.pattern}$",
    "examples": ["12.34"],
    "description": f"A decimal string: less than 10^{AMOUNT_DIGITS} in absolute value, at most "
    f"{MAX_DECIMAL_PLACES} decimal places; prices, costs, refunds and ad amounts are not "
    "negative (fees may be), and a rate is more than 0.",
}
DecimalString = Annotated[
    Decimal,
    BeforeValidator(parse_decimal_string),
    PlainSerializer(plain, return_type=str),
    WithJsonSchema(_DECIMAL_SCHEMA, mode="validation"),
]
# A rate: a decimal string or a whole number.
DecimalFigure = Annotated[
    Decimal,
    BeforeValidator(parse_decimal),
    PlainSerializer(plain, return_type=str),
    WithJsonSchema({"anyOf": [_DECIMAL_SCHEMA, {"type": "integer"}]}, mode="validation"),
]
CurrencyCode = Annotated[
    str,
    BeforeValidator(_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD"]}),
]


class Money(BaseModel):
    """``{"amount": "12.34", "currency": "USD"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: DecimalString
    currency: CurrencyCode


def _not_negative(amount: Decimal) -> Decimal:
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


# Fees stay plain Money: a marketplace credits fees back.
class NonNegativeMoney(Money):
    """Money not below zero: a price, a cost, a refund (a correction is a new version,
    not a negative amount)."""

    # Checked at the amount, not the whole object: named beside a bad currency.
    amount: Annotated[DecimalString, AfterValidator(_not_negative)]
