"""The canonical events of CONTRACT §3 and the Kafka messages that carry them.

Ingest validates pushed batches with :func:`validate_batch`; every service reads the
Kafka messages with :class:`EventMessage`. Topic names come from :func:`topic_for`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections import defaultdict
from dataclasses import replace
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.errors import FieldError
from shared.money import CurrencyCode, DecimalFigure, Money, NonNegativeMoney
from shared.text import trimmed
from shared.time import (
    DATE_RANGE,
    DATE_TEXT,
    EARLIEST_DATE,
    LATEST_DATE,
    country_code,
    in_date_range,
)
from shared.validation_context import STORED, accepting

EventType = Literal[
    "order_line",
    "refund",
    "fee",
    "ad_spend",
    "traffic",
    "inventory_snapshot",
    "unit_cost",
    "shipment",
    "order_defect",
    "cs_ticket",
    "fx_rate",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DEADLETTER_TOPIC = "lodestar.deadletter.v1"
ALERTS_TOPIC = "lodestar.alerts.v1"


# PostgreSQL stores no NUL character in text or jsonb: an event holding one would be
# accepted here and then fail in the consumer, holding up every event behind it.
NO_NUL = "must not contain the NUL character (\\u0000)"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NO_NUL)
    return value


DATE_REASON = "must be a date such as 2026-03-01"
TIMESTAMP_REASON = "must be a timestamp with its offset, such as 2026-03-01T07:15:00Z"


def _date_text(value: object) -> object:
    # Lax parsing would take a midnight timestamp or a number of seconds for a date.
    if isinstance(value, dt.datetime) or not (
        isinstance(value, dt.date) or (isinstance(value, str) and DATE_TEXT.match(value))
    ):
        raise ValueError(DATE_REASON)
    return value


# A timestamp is written from its date on: lax parsing would read a number, or a string
# of digits (a compact date such as 20260301), as seconds since 1970, and a bare date is
# no instant at all.
_TIMESTAMP_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")
OFFSET_REASON = "must have an offset from -12:00 to +14:00 (no time zone is further)"


# The clock of a timestamp, read only to say which part is out of range: the parser
# reports hour 24 or second 60 as "unexpected extra characters".
_CLOCK = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?"
    r"(?:[.,][0-9]+)?(?:[Zz]|[+-]([0-9]{2}):?([0-9]{2}))?$"
)
_CLOCK_PARTS = (("hour", 23), ("minute", 59), ("second", 59))
_OFFSET_OF_HOURS = re.compile(r"[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?(?:[.,][0-9]+)?[+-][0-9]{2}$")


def _clock_beyond(text: str) -> str | None:
    clock = _CLOCK.match(text)
    if clock is None:
        return None
    hour, minute, second, offset_hours, offset_minutes = clock.groups()
    for (part, highest), written in zip(_CLOCK_PARTS, (hour, minute, second), strict=True):
        if written is not None and int(written) > highest:
            return f"{part} {written} is beyond {highest:02d}"
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return OFFSET_REASON
    return None


def timestamp_text(value: object, parse: ValidatorFunctionWrapHandler) -> object:
    """A timestamp as ``parse`` reads it, from text written from its date on; a clock
    out of range is named. (Wraps the parser: every event has one or more timestamps,
    and its clock needs reading only when the parser refuses it.)"""
    if isinstance(value, dt.datetime):
        return parse(value)
    if not isinstance(value, str) or not _TIMESTAMP_TEXT.match(value):
        raise ValueError(TIMESTAMP_REASON)
    try:
        return parse(value)
    except ValidationError:
        if _OFFSET_OF_HOURS.search(value):
            # ISO 8601's offset of whole hours ("+08"), which the parser reads not; a
            # clock out of range is named below, as with its minutes.
            value += ":00"
            with contextlib.suppress(ValidationError):
                return parse(value)
        beyond = _clock_beyond(value)
        if beyond == OFFSET_REASON:
            raise ValueError(OFFSET_REASON) from None
        if beyond is not None:
            raise ValueError(f"{TIMESTAMP_REASON} ({beyond})") from None
        raise


def _dated(value: dt.date) -> dt.date:
    if not in_date_range(value):
        raise ValueError(f"must be {DATE_RANGE}")
    return value


# No time zone is further from UTC (Baker Island, Kiribati): an offset beyond is a
# typo that would move the event to another day.
_OFFSETS = (dt.timedelta(hours=-12), dt.timedelta(hours=14))


# The instants whose date is within the calendar in every time zone: an event at one
# beyond would count on a local date (a Tokyo store's 2200-01-01) no question can name.
FIRST_INSTANT = dt.datetime.combine(EARLIEST_DATE, dt.time(12), tzinfo=dt.UTC)
_LAST_INSTANT = dt.datetime.combine(LATEST_DATE, dt.time(9, 59, 59), tzinfo=dt.UTC)
INSTANT_RANGE = (
    f"between {FIRST_INSTANT:%Y-%m-%dT%H:%M:%SZ} and {_LAST_INSTANT:%Y-%m-%dT%H:%M:%SZ}, "
    f"so that its date is {DATE_RANGE} in every time zone"
)


def within_offsets(value: dt.datetime) -> bool:
    """Whether the timestamp's offset (if any) is one a time zone has."""
    offset = value.utcoffset()
    return offset is None or _OFFSETS[0] <= offset <= _OFFSETS[1]


# Naive, in UTC: a pushed event has several timestamps, and comparing aware ones asks
# each for its offset again.
_FIRST_UTC = FIRST_INSTANT.replace(tzinfo=None)
_AFTER_LAST_UTC = _LAST_INSTANT.replace(tzinfo=None) + dt.timedelta(seconds=1)


def _timed(value: dt.datetime, info: ValidationInfo) -> dt.datetime:
    _dated(value.date())
    offset = value.utcoffset()
    if offset is None or not accepting(info):
        return value
    if not _OFFSETS[0] <= offset <= _OFFSETS[1]:
        raise ValueError(OFFSET_REASON)
    if not _FIRST_UTC <= value.replace(tzinfo=None) - offset < _AFTER_LAST_UTC:
        raise ValueError(f"must be {INSTANT_RANGE}")
    return value


# The longest identifier an event may carry (store, SKU, order ...): a filter naming a
# longer one can match nothing.
MAX_TEXT = 256
# Metrics keeps up to four identifiers (a store, an order, a SKU, a category) and the
# platform in one index entry, which PostgreSQL bounds at 2,704 bytes: 256 characters of
# Chinese or emoji were accepted, then refused by every fact table and never counted.
MAX_TEXT_BYTES = 512
TEXT_BYTES_REASON = (
    f"must be at most {MAX_TEXT_BYTES} bytes in UTF-8 ({MAX_TEXT} characters of ASCII, "
    f"{MAX_TEXT_BYTES // 3} of Chinese)"
)


# What a filter or a setting naming an identifier is told when it names none an event
# could carry.
IDENTIFIER_LIMIT = f"at most {MAX_TEXT} characters and {MAX_TEXT_BYTES} bytes of UTF-8"


def within_identifier_bytes(value: str) -> bool:
    # Only a value of more than a quarter of the bound in characters can pass it.
    return (
        len(value) <= MAX_TEXT_BYTES // 4
        or len(value.encode(errors="surrogatepass")) <= MAX_TEXT_BYTES
    )


def is_identifier_length(value: str) -> bool:
    """Whether an event could name ``value`` as an identifier, by its length."""
    return len(value) <= MAX_TEXT and within_identifier_bytes(value)


def _fits_keys(value: str) -> str:
    if not within_identifier_bytes(value):
        raise ValueError(TEXT_BYTES_REASON)
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT),
    AfterValidator(_no_nul),
    AfterValidator(_fits_keys),
]


def _blank_as_absent(value: object) -> object:
    """An optional text left blank is absent, as an empty CSV cell is: ERPs write "" for
    a field they have no value for, and a category of "" would be a category."""
    return None if isinstance(value, str) and not trimmed(value) else value


OptionalText = Annotated[
    Text | None,
    BeforeValidator(_blank_as_absent),
    # As read: "" is taken (as absent), which Text's own minLength would deny a client
    # that checks its events against the API document before it sends them.
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "maxLength": MAX_TEXT}, {"type": "null"}],
            "description": 'Optional; blank ("" or spaces) is the same as absent',
        }
    ),
]
# A refund's reason, a carrier's name: text a person wrote, kept and exported with the
# event; far longer is a mistake (a whole document pasted), not a reason.
MAX_FREE_TEXT = 2_000
FreeText = Annotated[str, StringConstraints(max_length=MAX_FREE_TEXT), AfterValidator(_no_nul)]
# As PostgreSQL's integer, which keeps quantities and versions; one bound for every
# count, far above any real day's clicks or stock.
MAX_INT = 2**31 - 1


def _countable(value: int, info: ValidationInfo) -> int:
    if value > MAX_INT and accepting(info):
        raise ValueError(f"must be at most {MAX_INT}")
    return value


# The ceiling is checked where events are accepted (not when a stored one is read
# again), and told in the API document all the same.
Count = Annotated[
    int,
    Field(ge=0, strict=True, json_schema_extra={"maximum": MAX_INT}),
    AfterValidator(_countable),
]
Quantity = Annotated[int, Field(gt=0, le=MAX_INT, strict=True)]
EventDate = Annotated[dt.date, BeforeValidator(_date_text), AfterValidator(_dated)]
EventTime = Annotated[
    AwareDatetime,
    WrapValidator(timestamp_text),
    AfterValidator(_timed),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "examples": ["2026-03-01T07:15:00Z"],
            "description": f"An RFC 3339 timestamp with its offset (-12:00 to +14:00), "
            f"{INSTANT_RANGE}. Also read as they mean it: no seconds (07:15Z), an offset "
            "without its colon (+0800), a fraction after a comma.",
        },
        mode="validation",
    ),
]


def topic_for(event_type: str, prefix: str = "") -> str:
    """``lodestar.<type>.v1``, with an optional prefix that tests use to stay apart."""
    return f"{prefix}lodestar.{event_type}.v1"


def all_event_topics(prefix: str = "") -> list[str]:
    return [topic_for(t, prefix) for t in EVENT_TYPES]


class Payload(BaseModel):
    # Unknown payload fields are refused: a misspelt "shipping_prce" would otherwise
    # vanish silently and the GMV would be wrong.
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderLine(Payload):
    order_id: Text
    line_id: Text
    sku: Text
    quantity: Quantity
    unit_price: NonNegativeMoney
    shipping_price: NonNegativeMoney | None = None
    item_tax: NonNegativeMoney | None = None
    discount: NonNegativeMoney | None = None
    status: Literal["pending", "shipped", "delivered", "cancelled"]
    purchased_at: EventTime
    category: OptionalText = None
    fulfillment_channel: Literal["platform", "merchant"] | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> OrderLine:
        # A line's amounts add up into one GMV, so they must share a currency: the unit
        # price's, or, in the check of a payload whose unit price failed, the first
        # other amount's. Every amount in another currency is named, not only the first.
        given = [
            (name, money)
            for name in MONEY_OF_A_LINE
            if (money := getattr(self, name, None)) is not None
        ]
        if not given:
            return self
        first, reference = given[0]
        _refuse_conflicts(
            self,
            [
                _conflict(
                    "{at} must equal {first}.currency ({currency})",
                    {"at": f"{name}.currency", "first": first, "currency": reference.currency},
                )
                for name, money in given[1:]
                if money.currency != reference.currency
            ],
        )
        return self


# In the order their currencies are compared: each with the first given.
MONEY_OF_A_LINE = ("unit_price", "shipping_price", "item_tax", "discount")


def _conflict(message: str, context: dict[str, Any]) -> InitErrorDetails:
    """A check between a payload's fields failed: ``context["at"]`` names the field."""
    return InitErrorDetails(
        type=PydanticCustomError("payload_conflict", message, context), loc=(), input=None
    )


def _refuse_conflicts(model: BaseModel, conflicts: list[InitErrorDetails]) -> None:
    """Every conflict found, at once: an ERP fixes them in one round."""
    if conflicts:
        raise ValidationError.from_exception_data(type(model).__name__, conflicts)


def _not_before(
    model: BaseModel, info: ValidationInfo, later: str, earlier: str
) -> list[InitErrorDetails]:
    """``later`` before ``earlier``, both given: a reply before the ticket was opened
    would make a negative response time."""
    after, before = getattr(model, later), getattr(model, earlier)
    if after is not None and before is not None and after < before and accepting(info):
        return [_conflict("{at} must not be before {earlier}", {"at": later, "earlier": earlier})]
    return []


class Refund(Payload):
    order_id: Text
    sku: OptionalText = None
    amount: NonNegativeMoney
    quantity: Count | None = None
    refunded_at: EventTime
    reason: FreeText | None = None


class Fee(Payload):
    fee_type: Literal["commission", "fulfillment", "storage", "payment", "other"]
    amount: Money
    charged_at: EventTime
    order_id: OptionalText = None
    sku: OptionalText = None


class AdSpend(Payload):
    date: EventDate
    campaign_id: Text
    sku: OptionalText = None
    impressions: Count
    clicks: Count
    cost: NonNegativeMoney
    attributed_sales: NonNegativeMoney
    attributed_orders: Count


class Traffic(Payload):
    date: EventDate
    sku: Text
    sessions: Count
    page_views: Count | None = None


class InventorySnapshot(Payload):
    date: EventDate
    sku: Text
    warehouse: Text
    on_hand: Count
    inbound: Count | None = None
    reserved: Count | None = None


class UnitCost(Payload):
    sku: Text
    cost: NonNegativeMoney
    effective_from: EventDate


class Shipment(Payload):
    order_id: Text
    promised_ship_by: EventTime
    shipped_at: EventTime | None = None
    carrier: FreeText | None = None
    tracking_valid: StrictBool | None = None
    promised_delivery_by: EventTime | None = None
    delivered_at: EventTime | None = None
    cancelled_by_seller_before_ship: StrictBool | None = None

    @model_validator(mode="after")
    def _delivered_after_shipping(self, info: ValidationInfo) -> Shipment:
        conflicts = _not_before(self, info, "delivered_at", "shipped_at")
        if self.cancelled_by_seller_before_ship and accepting(info):
            # Cancelled before shipping, it is no shipment due: a shipping time would
            # make it due, and late, as well.
            conflicts += [
                _conflict(
                    "{at} must be absent when cancelled_by_seller_before_ship is true",
                    {"at": at},
                )
                for at in ("shipped_at", "delivered_at")
                if getattr(self, at) is not None
            ]
        _refuse_conflicts(self, conflicts)
        return self


class OrderDefect(Payload):
    order_id: Text
    kind: Literal["negative_feedback", "a_to_z_claim", "chargeback", "claim"]
    reported_at: EventTime


class CsTicket(Payload):
    ticket_id: Text
    opened_at: EventTime
    first_response_at: EventTime | None = None
    resolved_at: EventTime | None = None
    csat: Annotated[int, Field(ge=1, le=5, strict=True)] | None = None

    @model_validator(mode="after")
    def _answered_after_opening(self, info: ValidationInfo) -> CsTicket:
        _refuse_conflicts(
            self,
            _not_before(self, info, "first_response_at", "opened_at")
            + _not_before(self, info, "resolved_at", "opened_at"),
        )
        return self


class FxRate(Payload):
    date: EventDate
    base: CurrencyCode
    quote: CurrencyCode
    rate: Annotated[DecimalFigure, Field(gt=0)]

    @model_validator(mode="after")
    def _identity_is_one(self, info: ValidationInfo) -> FxRate:
        # A currency's rate to itself is 1 (a feed listing every pair may say so, and
        # conversion never reads it); any other figure for it is a mistake to report.
        known = None not in (self.quote, self.base, self.rate)
        if known and self.quote == self.base and self.rate != 1 and accepting(info):
            identity = _conflict("{at} must be 1 when quote is base", {"at": "rate"})
            _refuse_conflicts(self, [identity])
        return self


PAYLOAD_MODELS: dict[str, type[Payload]] = {
    "order_line": OrderLine,
    "refund": Refund,
    "fee": Fee,
    "ad_spend": AdSpend,
    "traffic": Traffic,
    "inventory_snapshot": InventorySnapshot,
    "unit_cost": UnitCost,
    "shipment": Shipment,
    "order_defect": OrderDefect,
    "cs_ticket": CsTicket,
    "fx_rate": FxRate,
}


def _marketplace(value: object, info: ValidationInfo) -> object:
    return country_code(value) if accepting(info) else value


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Annotated[
        str,
        StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64),
        AfterValidator(_no_nul),
    ]
    store_id: Text
    marketplace: Annotated[str, BeforeValidator(_marketplace)]


class Envelope(BaseModel):
    """An event as pushed, before its payload is checked against its type."""

    # A misspelt "verison" would otherwise vanish and the default take its place.
    model_config = ConfigDict(extra="forbid")

    event_id: Text
    type: EventType
    version: Annotated[int, Field(ge=1, le=MAX_INT, strict=True)] = 1
    source: Source
    occurred_at: EventTime
    payload: dict[str, Any]
    # Clients copy it from the Kafka message shape; ignored, as the tenant comes from
    # the token.
    tenant_id: Annotated[str, AfterValidator(_no_nul)] | None = None


class Event(BaseModel):
    """A validated canonical event."""

    event_id: str
    type: EventType
    version: int
    source: Source
    occurred_at: EventTime
    payload: Payload


class EventMessage(BaseModel):
    """What travels on ``lodestar.<type>.v1``: the event, its tenant and ingest time."""

    tenant_id: str
    event_id: str
    type: EventType
    version: int
    source: Source
    occurred_at: EventTime
    ingested_at: EventTime
    payload: dict[str, Any]
    # Validated once: a consumer asks for it several times per message.
    _typed: Payload | None = PrivateAttr(default=None)

    def typed_payload(self) -> Payload:
        # Through the private-attribute dict itself: pydantic's attribute lookup of a
        # private attribute took longer than the validation this saves.
        private = self.__pydantic_private__
        assert private is not None
        typed: Payload | None = private["_typed"]
        if typed is None:
            typed = private["_typed"] = PAYLOAD_MODELS[self.type].model_validate(
                self.payload, context=STORED
            )
        return typed


_ENVELOPES = TypeAdapter(list[Envelope])
BOOL_REASON = "must be true or false"
WHOLE_REASON = "must be a whole number written without a fraction (3, not 3.0)"
TEXT_FOR_WHOLE_REASON = 'must be a whole number written as a JSON number (3, not "3")'
_REASON_BY_PYDANTIC_TYPE = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    # Pydantic's own words name its classes ("instance of Money").
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "bool_type": BOOL_REASON,
    "timezone_aware": TIMESTAMP_REASON,
    "int_from_float": WHOLE_REASON,
    "int_parsing": "must be a whole number",
    "list_type": "must be a JSON list",
}
_INDEX = re.compile(r"^\d+$")


# Pydantic's words for a bound or a calendar it cannot read, in the API's: a timestamp
# field is not "a valid datetime or date", and one bound reads one way everywhere.
_REASON_WITH_CONTEXT = {
    "datetime_parsing": TIMESTAMP_REASON + " ({error})",
    "datetime_from_date_parsing": TIMESTAMP_REASON + " ({error})",
    "date_parsing": DATE_REASON + " ({error})",
    "date_from_datetime_parsing": DATE_REASON + " ({error})",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
}


def api_reason(error: Any) -> str:
    """A pydantic error's reason in the API's words (any body's, not only events')."""
    kind = error.get("type", "")
    if kind == "int_type":
        # Counts are read strictly: "3" and 3.0 are refused for what they are written as.
        written = error.get("input")
        if isinstance(written, float) and not -(2.0**63) < written < 2.0**63:
            return "is too large a number"
        if isinstance(written, float):
            return WHOLE_REASON
        if isinstance(written, str):
            return TEXT_FOR_WHOLE_REASON
        return "must be a whole number"
    if kind == "string_type":
        return "must not be null" if error.get("input") is None else "must be a string"
    if kind == "string_too_short":
        # Identifiers are read trimmed, so one of spaces arrives empty.
        least = (error.get("ctx") or {}).get("min_length", 1)
        return "must not be blank" if least == 1 else f"must be at least {least} characters"
    if kind in _REASON_BY_PYDANTIC_TYPE:
        return _REASON_BY_PYDANTIC_TYPE[kind]
    if kind in _REASON_WITH_CONTEXT:
        # A context of another shape falls through to pydantic's own words below.
        with contextlib.suppress(KeyError, IndexError):
            return _REASON_WITH_CONTEXT[kind].format(**(error.get("ctx") or {}))
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _field_errors(
    exc: ValidationError | list[Any], index_of: list[int] | None, prefix: str
) -> list[FieldError]:
    found: list[FieldError] = []
    for error in exc.errors() if isinstance(exc, ValidationError) else exc:
        loc = list(error.get("loc", ()))
        index: int | None = None
        first = loc[0] if loc else None
        if isinstance(first, int):
            loc.pop(0)
            index = index_of[first] if index_of is not None else first
        # Pydantic names union branches and validators in the path; keep only fields.
        parts = [
            str(p)
            for p in loc
            if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        ]
        context = error.get("ctx") or {}
        if error.get("type") == "payload_conflict":
            # Raised on the whole payload; name the field at fault.
            parts.append(str(context["at"]))
        path = ".".join(parts)
        found.append(
            FieldError(
                index=index,
                # An event that is not an object at all.
                field=f"{prefix}{path}" if path else prefix.rstrip(".") or "event",
                reason=api_reason(error),
            )
        )
    return found


def validate_batch(raw_events: list[Any]) -> tuple[list[Event], list[FieldError]]:
    """Checks a whole pushed batch at once.

    Returns the events, in order, when every one is valid; otherwise the errors of
    every bad event (index, field and reason) and no events.
    """
    errors: list[FieldError] = []
    envelopes: list[Envelope | None] = [None] * len(raw_events)
    try:
        for position, envelope in enumerate(_ENVELOPES.validate_python(raw_events)):
            envelopes[position] = envelope
    except ValidationError as exc:
        errors.extend(_field_errors(exc, None, ""))
        bad = {e.index for e in errors}
        # Validate the good envelopes alone so their payload errors are reported too.
        for position, item in enumerate(raw_events):
            if position in bad:
                errors.extend(_payload_errors_beside(item, position))
                continue
            try:
                envelopes[position] = Envelope.model_validate(item)
            except ValidationError as inner:
                errors.extend(_field_errors(inner, None, ""))

    by_type: dict[str, list[int]] = defaultdict(list)
    for position, maybe in enumerate(envelopes):
        if maybe is not None:
            by_type[maybe.type].append(position)

    payloads: dict[int, Payload] = {}
    for event_type, positions in by_type.items():
        adapter = _payload_adapter(event_type)
        try:
            items = adapter.validate_python([envelopes[p].payload for p in positions])  # type: ignore[union-attr]
            payloads.update(zip(positions, items, strict=True))
        except ValidationError as exc:
            errors.extend(_field_errors(exc, positions, "payload."))
            errors.extend(_conflicts_beside_failed_fields(exc, event_type, positions, envelopes))

    if errors:
        errors.sort(key=lambda e: (e.index if e.index is not None else -1, e.field))
        return [], errors
    return [
        Event(
            event_id=env.event_id,
            type=env.type,
            version=env.version,
            source=env.source,
            occurred_at=env.occurred_at,
            payload=payloads[position],
        )
        for position, env in enumerate(envelopes)
        if env is not None
    ], []


def _payload_errors_beside(item: Any, position: int) -> list[FieldError]:
    """The payload's own errors in an event whose envelope is wrong (a marketplace, a
    version), when its type and payload can be read: an ERP learns of every field to
    fix in one answer, not one field a round trip."""
    if not isinstance(item, dict) or not isinstance(item.get("payload"), dict):
        return []
    event_type = item.get("type")
    if not isinstance(event_type, str) or event_type not in PAYLOAD_MODELS:
        return []
    try:
        _payload_adapter(event_type).validate_python([item["payload"]])
    except ValidationError as exc:
        return _field_errors(exc, [position], "payload.")
    return []


_PAYLOAD_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {}


def _conflicts_beside_failed_fields(
    exc: ValidationError,
    event_type: str,
    positions: list[int],
    envelopes: list[Envelope | None],
) -> list[FieldError]:
    """The checks between fields (a reply before the ticket opened, amounts in two
    currencies) of payloads some fields of which failed, which pydantic skips: run on
    the fields that are valid, so an ERP fixes everything in one round."""
    failed: dict[int, set[str]] = defaultdict(set)
    # The fields of each payload that failed only in an amount: their currency is read.
    amounts_failed: dict[int, set[str]] = defaultdict(set)
    for error in exc.errors():
        loc = error.get("loc", ())
        if len(loc) >= 2 and isinstance(loc[0], int):
            # An amount's own error (a negative price too), or a key of its own (an
            # unknown one): its currency is still to be read.
            if len(loc) >= 3 and loc[2] != "currency":
                amounts_failed[loc[0]].add(str(loc[1]))
            else:
                failed[loc[0]].add(str(loc[1]))
    found: list[FieldError] = []
    for item in {*failed, *amounts_failed}:
        fields = failed[item]
        payload = envelopes[positions[item]].payload  # type: ignore[union-attr]
        if not isinstance(payload, dict):
            continue
        rest = {name: value for name, value in payload.items() if name not in fields}
        for name in amounts_failed[item] - fields:
            money = rest.get(name)
            if isinstance(money, dict):
                rest[name] = {"amount": "0", "currency": money.get("currency")}
        try:
            _lenient(event_type).model_validate(rest)
        except ValidationError as partial:
            conflicts = [e for e in partial.errors() if e.get("type") == "payload_conflict"]
            found += [
                replace(error, index=positions[item])
                for error in _field_errors(conflicts, None, "payload.")
            ]
    return found


_LENIENT: dict[str, type[Payload]] = {}


def _lenient(event_type: str) -> type[Payload]:
    """The type's payload model with every field optional: its checks between fields
    run on whichever are given (each check passes over a field absent)."""
    if event_type not in _LENIENT:
        model = PAYLOAD_MODELS[event_type]
        optional: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if info.is_required():
                annotation: Any = info.annotation
                optional[name] = (annotation | None, None)
        made = create_model(f"Lenient{model.__name__}", __base__=model, **optional)
        _LENIENT[event_type] = cast("type[Payload]", made)
    return _LENIENT[event_type]


def _payload_adapter(event_type: str) -> TypeAdapter[list[Any]]:
    adapter = _PAYLOAD_ADAPTERS.get(event_type)
    if adapter is None:
        adapter = TypeAdapter(list[PAYLOAD_MODELS[event_type]])  # type: ignore[valid-type]
        _PAYLOAD_ADAPTERS[event_type] = adapter
    return adapter
