"""CSV upload for ERPs: one header row, one event a line, the same fields as JSON.

Columns: ``event_id``, ``version`` (optional, default 1), ``platform``, ``store_id``,
``marketplace``, ``occurred_at`` (optional: the event's own timestamp or date is used),
then the payload fields of the type. A money field is its amount column plus either
``<field>_currency`` or one ``currency`` column for the whole line. Empty cells are
absent fields. Values are turned into JSON types by the payload model's field types,
and the batch then goes through exactly the same validation as a JSON push.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import types
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from pydantic.fields import FieldInfo

from shared.code_page_936 import EURO_AS_0X80
from shared.errors import FieldError, InvalidInput, PayloadTooLarge, named_briefly
from shared.events import (
    BOOL_REASON,
    EVENT_TYPES,
    FIRST_INSTANT,
    PAYLOAD_MODELS,
    TEXT_FOR_WHOLE_REASON,
    validate_batch,
)
from shared.money import Money
from shared.text import WHITE_SPACE, trimmed, visible

# ``type`` may be a column too (a file written from whole events has it): each of its
# cells must then name the type the upload is of.
ENVELOPE_COLUMNS = (
    "event_id", "type", "version", "platform", "store_id", "marketplace", "occurred_at",
)  # fmt: skip
_REQUIRED_ENVELOPE = ("event_id", "platform", "store_id", "marketplace")
# The timestamp that stands for the event when the file has no occurred_at column.
_OCCURRED_FROM = (
    "purchased_at", "refunded_at", "charged_at", "opened_at", "reported_at",
    "promised_ship_by", "date", "effective_from",
)  # fmt: skip


def columns_described() -> str:
    """The columns of each type's file, for the API document (bold: required)."""

    def columns(name: str, field: FieldInfo) -> str:
        required = field.is_required()
        shown = f"**{name}**" if required else name
        if _kind(field) is Money:
            currency = f"**{name}_currency**" if required else f"{name}_currency"
            return f"{shown} + {currency} (or one currency column)"
        return shown

    envelope = (
        "**event_id**, type, version, **platform**, **store_id**, **marketplace**, occurred_at"
    )
    lines = [
        f"- `{event_type}`: {envelope}, "
        + ", ".join(
            columns(name, field) for name, field in PAYLOAD_MODELS[event_type].model_fields.items()
        )
        for event_type in PAYLOAD_MODELS
    ]
    return "\n".join(lines)


def _kind(field: FieldInfo) -> type:
    annotation = field.annotation
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in args if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if not isinstance(annotation, type):
        return str
    # A price that may not be negative is Money in a file's columns all the same.
    return Money if issubclass(annotation, Money) else annotation


_INTEGER = re.compile(r"[+-]?[0-9]+")


FLAG_REASON = "must be true/false, 1/0 or yes/no"


def _convert(kind: type, raw: str) -> Any:
    """The JSON value of a cell; left as text when it does not parse, so validation names it."""
    if kind is bool:
        lowered = trimmed(raw).lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return raw
    if kind is int:
        # ASCII digits only: int() also reads full-width and Arabic-Indic digits, and "1_000".
        cell = trimmed(raw)
        if not _INTEGER.fullmatch(cell):
            return raw
        try:
            return int(cell)
        except ValueError:  # longer than Python converts (4,300 digits): too large
            return -math.inf if cell.startswith("-") else math.inf
    return raw


@dataclass(frozen=True)
class CsvBatch:
    """A file's events in file order, the file line each one starts on, and the payload
    field each one's occurred_at was taken from (None where the file gave it)."""

    events: list[dict[str, Any]]
    rows: list[int]
    occurred_from: list[str | None]

    def in_file_terms(self, refused: InvalidInput) -> InvalidInput:
        """The refusal in a file's terms: without the occurred_at errors that only
        repeat the error of the cell occurred_at was taken from (the file has no such
        column to correct), and a flag's reason naming every spelling a cell may use."""
        named = {(error.index, error.field) for error in refused.errors}

        def echoes(error: FieldError) -> bool:
            if error.field != "occurred_at" or error.index is None:
                return False
            source = self.occurred_from[error.index]
            return source is not None and (error.index, f"payload.{source}") in named

        in_cells = {BOOL_REASON: FLAG_REASON, TEXT_FOR_WHOLE_REASON: "must be a whole number"}
        kept = [
            replace(error, reason=in_cells.get(error.reason, error.reason))
            for error in refused.errors
            if not echoes(error)
        ]
        if kept == refused.errors:
            return refused
        return InvalidInput(refused.detail, kept)


# Far more than any type's columns, or the empty rows a spreadsheet saves: past them a
# file is refused at once, not read (a million-column header took ingest 15 s).
MAX_COLUMNS = 100
MAX_BLANK_LINES = 100_000
# The encodings a file may come in: UTF-8, or GB18030 (of which GBK and GB2312 are
# parts) as Excel in a Chinese locale saves a CSV, when the upload declares it.
UTF8 = "utf-8"


# A quoted cell and the padding a spreadsheet may leave around it (`US, "1.00" ,`):
# skipinitialspace reads spaces before the opening quote, but not a tab, nor anything
# after the closing one.
_QUOTED_CELL = re.compile(r'[ \t]*("[^"]*(?:""[^"]*)*")[ \t]*')
_UNQUOTED_CELL = re.compile(r"[^,\r\n]*")
_PADDING_AROUND_A_QUOTE = re.compile(r'"[ \t]+(?:,|\r|\n|\Z)|(?:\A|[,\r\n]) *\t[ \t]*"')


def _without_padding_around_quotes(text: str) -> str:
    """The text with spaces and tabs around a quoted cell dropped: the csv module
    refuses them after the closing quote, and reads a tab before the opening one as
    the start of an unquoted cell.
    Read cell by cell, as CSV is: a quote inside a quoted cell is data, and so is one
    inside an unquoted cell. Anything else after a closing quote is left, with the rest
    of the text, for the csv module to refuse."""
    if _PADDING_AROUND_A_QUOTE.search(text) is None:
        return text
    kept: list[str] = []
    at = 0
    while at < len(text):
        quoted = _QUOTED_CELL.match(text, at)
        if quoted is not None:
            kept.append(quoted.group(1))
            at = quoted.end()
            if at < len(text) and text[at] not in ",\r\n":
                # Cleaned up to here, so that the csv module names this line, not the
                # first padded one.
                return "".join(kept) + text[at:]
        else:
            at_end = _UNQUOTED_CELL.match(text, at)
            assert at_end is not None  # matches the empty cell too
            kept.append(at_end.group())
            at = at_end.end()
        if at < len(text):
            kept.append(text[at])
            at += 1
    return "".join(kept)


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each record with the file line it starts on: a quoted cell may span lines, and
    blank lines are skipped. What the csv module refuses (an unterminated quote, a stray
    one, a cell over 128 KiB) is a 422 naming the line, not a server error."""
    # newline="": a line may end in LF, CRLF or a bare CR (old spreadsheets save so).
    # skipinitialspace: a quoted cell after a padding space (`US, "1.00"`) is read
    # quoted, not with its quotes as data.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    blank = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(
                f"line {line} is not valid CSV: {exc}",
                [FieldError(field="body", reason=str(exc), row=line)],
            ) from None
        if len(cells) > MAX_COLUMNS:
            raise InvalidInput(
                f"line {line} has {len(cells)} cells; a file has at most {MAX_COLUMNS} columns",
                [FieldError(field="body", reason=f"at most {MAX_COLUMNS} columns", row=line)],
            )
        # A line of nothing but separators or spaces is as blank as an empty one (a
        # spreadsheet saves its formatted but empty rows so).
        if any(trimmed(cell) for cell in cells):
            yield line, cells
            continue
        blank += 1
        if blank > MAX_BLANK_LINES:
            raise InvalidInput(
                f"more than {MAX_BLANK_LINES:,} blank lines; delete the empty rows",
                [FieldError(field="body", reason=f"at most {MAX_BLANK_LINES} blank lines")],
            )


def parse_csv(raw: bytes, event_type: str, max_events: int, encoding: str = UTF8) -> CsvBatch:
    """Events from an uploaded file, in file order, with the line each starts on. The
    file is UTF-8, or GB18030 (of which GBK and GB2312 are parts) when so declared."""
    if event_type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {event_type!r}",
            [FieldError(field="type", reason=f"one of {', '.join(EVENT_TYPES)}")],
        )
    text = _decoded(raw, encoding)
    # The end-of-file mark (Ctrl-Z) some old ERPs still write, a line break or not
    # after it.
    text = _END_OF_FILE.sub("", text)
    text = _without_padding_around_quotes(_without_separator_hint(text))
    _check_separator(*_first_line(text))
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise InvalidInput(
            "the file is empty", [FieldError(field="body", reason="a header row is required")]
        )
    header_row, padded = first
    # Spreadsheets pad header cells as they pad any other, and may end the header (and
    # every row) with a separator: an unnamed last column, empty in every row, is none.
    # ERPs and people capitalise and space column names: "Event ID" is event_id.
    # A byte order mark at the start of the first quoted name ("\ufeffEvent ID") is none
    # of it; elsewhere it is a character of the name.
    header = [_SPACES.sub("_", trimmed(column.lstrip("\ufeff"))).lower() for column in padded]
    while header and not header[-1]:
        header.pop()
    fields = PAYLOAD_MODELS[event_type].model_fields
    _check_header(header, header_row, fields)
    events: list[dict[str, Any]] = []
    rows: list[int] = []
    occurred_from: list[str | None] = []
    errors: list[FieldError] = []
    for row, cells in records:
        if len(events) == max_events:
            raise PayloadTooLarge(
                f"more than {max_events} rows in one file; at most {max_events} are accepted",
                [FieldError(field="body", reason=f"at most {max_events} rows a file")],
            )
        index = len(events)
        if len(cells) > len(header) and not any(trimmed(cell) for cell in cells[len(header) :]):
            cells = cells[: len(header)]
        if len(cells) != len(header):
            reason = f"has {len(cells)} cells; the header has {len(header)}"
            errors.append(FieldError(field="body", reason=reason, index=index, row=row))
        event, conflicts, source = _event(
            dict(zip(header, cells, strict=False)), event_type, fields
        )
        errors += [FieldError(field, reason, index=index, row=row) for field, reason in conflicts]
        events.append(event)
        rows.append(row)
        occurred_from.append(source)
    batch = CsvBatch(events, rows, occurred_from)
    if errors:
        # Every other row's errors too, in the same answer: a file is fixed in one
        # round, not one per kind of error. A row refused already (cells in the wrong
        # columns, two cells that contradict each other) has said what is wrong with it.
        refused = {e.index for e in errors}
        _, field_errors = validate_batch(events)
        errors += [
            replace(e, row=rows[e.index])
            for e in field_errors
            if e.index is not None and e.index not in refused
        ]
        errors.sort(key=lambda e: e.index if e.index is not None else -1)
        bad = len({e.index for e in errors})
        raise batch.in_file_terms(InvalidInput(f"{bad} invalid row(s); nothing was stored", errors))
    if not events:
        raise InvalidInput(
            "the file has no rows", [FieldError(field="body", reason="at least one row")]
        )
    return batch


# Unicode's white space, as trimmed: Python's \s also takes U+001C to U+001F, which a
# column name "\x1cquantity" then named "_quantity".
_SPACES = re.compile(f"[{re.escape(WHITE_SPACE)}]+")


_END_OF_FILE = re.compile(r"\x1a\s*\Z")


# Ends at the first line break of any kind: a line may end in LF, CRLF or a bare CR.
# Quoted, or padded with separators, as a spreadsheet that kept it as a cell saves it.
_SEPARATOR_HINT = re.compile(
    r'(?P<quote>")?sep=(?P<separator>[^\r\n"]?)(?(quote)")[,;\t ]*(?=\r\n|\n|\r|$)',
    re.IGNORECASE,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def _decoded(raw: bytes, encoding: str) -> str:
    if encoding != UTF8 and _written_in_utf8(raw):
        # A UTF-8 file mislabelled, which read as GB18030 would be stored garbled.
        raise InvalidInput(
            "the file is UTF-8 text, though declared a Chinese code page (GB18030, GBK "
            "or GB2312): send it as UTF-8 (charset=utf-8, or none)",
            [FieldError(field="header.Content-Type", reason="the file is UTF-8")],
        )
    # UTF-16 or UTF-32 without a byte order mark decodes as UTF-8 with a NUL after
    # each letter, which no text file holds: named as any stray byte is.
    at = raw.find(b"\x00")
    if at < 0:
        try:
            # utf-8-sig: a byte order mark is no part of the header.
            if encoding == UTF8:
                return raw.decode("utf-8-sig")
            return raw.decode(encoding, errors=EURO_AS_0X80)
        except UnicodeDecodeError as exc:
            # utf-8-sig counts from after a byte order mark.
            bom = encoding == UTF8 and raw.startswith(codecs.BOM_UTF8)
            at = exc.start + (len(codecs.BOM_UTF8) if bom else 0)
    # The line of the first stray byte, as the file's other errors name theirs: one
    # Latin-1 name in a 5,000-line export is found at once.
    line = len(_LINE_BREAK_BYTES.findall(raw, 0, at)) + 1
    name = "UTF-8" if encoding == UTF8 else "GB18030"
    # Not "declare it GB18030" to everyone: a Latin-1 file so declared would be
    # taken, its accents read as Chinese.
    hint = (
        ": save it as UTF-8 (Excel: CSV UTF-8); only a file Excel saved in a Chinese "
        "locale (GBK) may instead be sent with Content-Type: text/csv; charset=gb18030"
        if encoding == UTF8
        else ""
    )
    raise InvalidInput(
        f"the file is not {name} text: line {line} holds the byte 0x{raw[at]:02X}{hint}",
        [FieldError(field="body", reason=f"must be {name} CSV", row=line)],
    )


def _written_in_utf8(raw: bytes) -> bool:
    """Whether bytes declared GB18030 are UTF-8 text: they read as UTF-8, holding a
    character of three bytes or more there, as Chinese is. Short GBK words are often
    valid UTF-8 of two-byte characters (女装 reads as Ůװ), never of longer ones but by
    a rare chance."""
    if raw.isascii():
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any(ord(character) >= 0x800 for character in text)


def _first_line(text: str) -> tuple[str, int]:
    """The first line with more than separators and spaces, and its number: the one
    the header is read from."""
    start = number = 0
    for number, brk in enumerate(_LINE_BREAK.finditer(text), start=1):
        line = text[start : brk.start()]
        if line.strip(" \t,;") or number > MAX_BLANK_LINES:
            return line, number
        start = brk.end()
    return text[start:], number + 1


def _without_separator_hint(text: str) -> str:
    """Excel writes (and reads) a first line ``sep=,`` naming the separator; ERP exports
    made for Excel carry it. A comma's is no data: the line is left blank, so every
    other keeps its number. Another separator's is refused, naming it."""
    hint = _SEPARATOR_HINT.match(text)
    if hint is None:
        return text
    if hint.group("separator") != ",":
        named = hint.group("separator")
        shown = repr(named) if named.strip() else "a tab or a space" if named else "nothing"
        raise InvalidInput(
            f"line 1 ({hint.group(0).strip()}) says columns are separated by {shown}: "
            "columns are separated by commas",
            [FieldError(field="body", reason="columns are separated by commas", row=1)],
        )
    return text[hint.end() :]


def _check_separator(first_line: str, row: int) -> None:
    """A first line without a comma but with ``;`` or a tab: the file was saved with
    another separator (Excel does so in a locale whose list separator is ``;``), its
    names quoted or not."""
    if "," not in first_line and (separator := next((s for s in ";\t" if s in first_line), None)):
        shown = "';'" if separator == ";" else "tabs"
        raise InvalidInput(
            f"the header is one column holding {shown}: columns are separated by commas",
            [FieldError(field="body", reason=f"separated by {shown}, not commas", row=row)],
        )


def _check_header(header: list[str], row: int, fields: dict[str, FieldInfo]) -> None:
    money = [name for name, f in fields.items() if _kind(f) is Money]
    # One currency for every amount of a row; a type without amounts has no use for it.
    known = set(ENVELOPE_COLUMNS) | set(fields) | ({"currency"} if money else set())
    known |= {f"{name}_currency" for name in money}
    # An unnamed column is named by its place (the first is column 1), not as "".
    errors = [
        FieldError(field=f"column {place}", reason="has no name", row=row)
        for place, column in enumerate(header, start=1)
        if not column
    ]
    errors += [
        FieldError(field=column, reason="unknown column", row=row)
        for column in dict.fromkeys(header)
        if column and column not in known
    ]
    errors += [
        FieldError(field=column, reason="appears more than once in the header", row=row)
        for column, count in Counter(c for c in header if c).items()
        if count > 1
    ]
    # Said once of the header, not once of every row.
    present = set(header)
    required = [*_REQUIRED_ENVELOPE, *(n for n, f in fields.items() if f.is_required())]
    errors += [
        FieldError(field=column, reason="missing column", row=row)
        for column in required
        if column not in present
    ]
    errors += [
        FieldError(
            field=f"{name}_currency", reason="missing column (or one currency column)", row=row
        )
        for name, f in fields.items()
        if f.is_required() and _kind(f) is Money and not {f"{name}_currency", "currency"} & present
    ]
    if errors:
        named = named_briefly([f"{visible(e.field)} ({e.reason})" for e in errors])
        raise InvalidInput(f"the header has {len(errors)} bad column(s): {named}", errors)


def _event(
    row: dict[str, str], event_type: str, fields: dict[str, FieldInfo]
) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
    """The event a row holds, the (field, reason) of cells that contradict each other, and
    the payload field its occurred_at was taken from when the row gives none."""
    cells = {k: trimmed(v) for k, v in row.items() if trimmed(v)}
    payload: dict[str, Any] = {}
    conflicts: list[tuple[str, str]] = []
    # A blank cell of a type column names no type: refused as another type is.
    if "type" in row and cells.get("type") != event_type:
        conflicts.append(("type", f"must be {event_type}, the type this upload is of"))
    for name, field in fields.items():
        if name not in cells:
            continue
        kind = _kind(field)
        if kind is Money:
            money = {"amount": cells[name]}
            own, shared = cells.get(f"{name}_currency"), cells.get("currency")
            if own and shared and own != shared:
                reason = f"{name}_currency ({own}) and currency ({shared}) disagree"
                conflicts.append((f"payload.{name}.currency", reason))
            currency = own or shared
            if currency:
                money["currency"] = currency
            payload[name] = money
        else:
            payload[name] = _convert(kind, cells[name])
    occurred, source = cells.get("occurred_at"), None
    if not occurred:
        # The field it is taken from, or would be: a row without it hears of that field
        # only, not of an occurred_at the file need not have.
        source = next((name for name in _OCCURRED_FROM if name in fields), None)
        occurred = _as_timestamp(cells[source]) if source in cells else None
    event: dict[str, Any] = {
        "event_id": cells.get("event_id"),
        "type": event_type,
        "version": _convert(int, cells.get("version", "1")),
        "source": {
            key: cells[key] for key in ("platform", "store_id", "marketplace") if key in cells
        },
        "occurred_at": occurred,
        "payload": payload,
    }
    return {k: v for k, v in event.items() if v is not None}, conflicts, source


def _as_timestamp(value: str) -> str:
    # A bare date stands for its midnight UTC (the calendar's first day for the first
    # instant an event may have); a timestamp is kept as written.
    try:
        stood = datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        return value
    return max(stood, FIRST_INSTANT).isoformat().replace("+00:00", "Z")
