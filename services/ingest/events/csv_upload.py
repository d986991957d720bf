"""CSV upload for ERPs: one header row, one event a line, the same fields as JSON.

Columns: ``event_id``, ``version`` (optional, default 1), ``platform``, ``store_id``,
``marketplace``, ``occurred_at`` (optional: the event's own timestamp or date is used),
then the payload fields of the type. A money field is its amount column plus either
``<field>_currency`` or one ``currency`` column for the whole line. Empty cells are
absent fields. Values are turned into JSON types by the payload model's field types,
and the batch then goes through exactly the same validation as a JSON push.
"""

from __future__ import annotations

import csv
import io
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic.fields import FieldInfo

from shared.errors import FieldError, InvalidInput, PayloadTooLarge
from shared.events import EVENT_TYPES, PAYLOAD_MODELS
from shared.money import Money

T = TypeVar("T")

ENVELOPE_COLUMNS = ("event_id", "version", "platform", "store_id", "marketplace", "occurred_at")
FIRST_DATA_ROW = 2
# The timestamp that stands for the event when the file has no occurred_at column.
_OCCURRED_FROM = (
    "purchased_at", "refunded_at", "charged_at", "opened_at", "reported_at",
    "promised_ship_by", "date", "effective_from",
)  # fmt: skip


def _kind(field: FieldInfo) -> type:
    annotation = field.annotation
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in args if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation if isinstance(annotation, type) else str


def _convert(kind: type, raw: str) -> Any:
    """The JSON value of a cell; left as text when it does not parse, so validation names it."""
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return raw
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _read(reader: csv.DictReader[str], step: Callable[[], T]) -> T:
    """A step of the reader; what the csv module refuses (a cell over 128 KiB, a stray
    quote in strict files) is a 422 naming the line, not a server error."""
    try:
        return step()
    except csv.Error as exc:
        raise InvalidInput(
            f"line {reader.line_num + 1} is not valid CSV: {exc}",
            [FieldError(field="body", reason=str(exc), row=reader.line_num + 1)],
        ) from None


def parse_csv(raw: bytes, event_type: str, max_events: int) -> list[Any]:
    """Events from an uploaded file, in file order (line n + 2 is event n)."""
    if event_type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {event_type!r}",
            [FieldError(field="type", reason=f"one of {', '.join(EVENT_TYPES)}")],
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the file is not UTF-8 text", [FieldError(field="body", reason="must be UTF-8 CSV")]
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    model = PAYLOAD_MODELS[event_type]
    fields = model.model_fields
    known = set(ENVELOPE_COLUMNS) | set(fields) | {"currency"}
    known |= {f"{name}_currency" for name, f in fields.items() if _kind(f) is Money}
    header = _read(reader, lambda: list(reader.fieldnames or []))
    if not header:
        raise InvalidInput(
            "the file is empty", [FieldError(field="body", reason="a header row is required")]
        )
    unknown = [column for column in header if column not in known]
    if unknown:
        raise InvalidInput(
            f"unknown column(s): {', '.join(unknown)}",
            [FieldError(field=column, reason="unknown column", row=1) for column in unknown],
        )
    rows = _read(reader, lambda: list(reader))
    if len(rows) > max_events:
        raise PayloadTooLarge(
            f"{len(rows)} rows in one file; at most {max_events} are accepted",
            [FieldError(field="body", reason=f"at most {max_events} rows a file")],
        )
    if not rows:
        raise InvalidInput(
            "the file has no rows", [FieldError(field="body", reason="at least one row")]
        )
    return [_event(row, event_type, fields) for row in rows]


def _event(
    row: dict[str, str | None], event_type: str, fields: dict[str, FieldInfo]
) -> dict[str, Any]:
    cells = {k: v.strip() for k, v in row.items() if k is not None and v is not None and v.strip()}
    payload: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in cells:
            continue
        kind = _kind(field)
        if kind is Money:
            currency = cells.get(f"{name}_currency") or cells.get("currency")
            payload[name] = {"amount": cells[name], "currency": currency}
        else:
            payload[name] = _convert(kind, cells[name])
    occurred = cells.get("occurred_at") or next(
        (_as_timestamp(cells[name]) for name in _OCCURRED_FROM if name in cells), None
    )
    event: dict[str, Any] = {
        "event_id": cells.get("event_id"),
        "type": event_type,
        "version": _convert(int, cells.get("version", "1")),
        "source": {
            "platform": cells.get("platform"),
            "store_id": cells.get("store_id"),
            "marketplace": cells.get("marketplace"),
        },
        "occurred_at": occurred,
        "payload": payload,
    }
    return {k: v for k, v in event.items() if v is not None}


def _as_timestamp(value: str) -> str:
    # A bare date stands for its midnight UTC; a timestamp is kept as written.
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time()).isoformat() + "Z"
    except ValueError:
        return value
