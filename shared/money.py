"""Money: a decimal amount with its currency. Never float."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
AMOUNT_LIMIT = Decimal(10) ** 15


def parse_decimal_string(value: object) -> Decimal:
    """A finite decimal from a string (or an int); floats are refused as lossy."""
    if isinstance(value, bool | float):
        raise ValueError('must be a decimal string such as "12.34"')
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError('must be a decimal string such as "12.34"') from exc
    else:
        raise ValueError('must be a decimal string such as "12.34"')
    if not result.is_finite():
        raise ValueError("must be a finite decimal")
    if abs(result) >= AMOUNT_LIMIT:
        # Beyond any real amount, and past what a float answer can say to the cent.
        raise ValueError("must be less than 10^15 in absolute value")
    return result


def _currency(value: object) -> str:
    if not isinstance(value, str) or not CURRENCY_PATTERN.match(value):
        raise ValueError("must be a three-letter ISO 4217 code such as USD")
    return value


DecimalString = Annotated[
    Decimal, BeforeValidator(parse_decimal_string), PlainSerializer(str, return_type=str)
]
CurrencyCode = Annotated[str, BeforeValidator(_currency)]


class Money(BaseModel):
    """``{"amount": "12.34", "currency": "USD"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: DecimalString
    currency: CurrencyCode
