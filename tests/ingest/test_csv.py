"""CSV upload: the same validation and idempotency as JSON, errors naming file lines."""

from __future__ import annotations

import httpx
import pytest

from services.ingest.events.csv_upload import parse_csv
from shared.errors import InvalidInput
from shared.events import validate_batch
from tests.conftest import NewTenant

HEADER = "event_id,platform,store_id,marketplace,order_id,line_id,sku,quantity,unit_price,shipping_price,currency,status,purchased_at"
GOOD = [
    "erp-1,amazon,acme-us,US,A1,1,LAMP,2,10.00,1.50,USD,shipped,2026-03-01T18:00:00Z",
    "erp-2,amazon,acme-us,US,A2,1,MUG,1,5.25,,USD,pending,2026-03-02T18:00:00Z",
]


async def upload(
    http: httpx.AsyncClient, headers: dict[str, str], kind: str, lines: list[str]
) -> httpx.Response:
    return await http.post(
        "/v1/events:csv",
        params={"type": kind},
        content=("\n".join(lines) + "\n").encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )


async def test_order_lines_from_csv_are_accepted_and_replayable(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write", "kpi:read"])
    headers = {**tenant.headers, "Idempotency-Key": "file-2026-03"}
    first = await upload(http, headers, "order_line", [HEADER, *GOOD])
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 2, "duplicates": 0}
    replay = await upload(http, headers, "order_line", [HEADER, *GOOD])
    assert replay.json() == first.json()
    # Saved again on another system: CRLF line endings and a BOM. The same file.
    resaved = await http.post(
        "/v1/events:csv",
        params={"type": "order_line"},
        content=("\ufeff" + "\r\n".join([HEADER, *GOOD]) + "\r\n").encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert resaved.status_code == 202, resaved.text
    assert resaved.json() == first.json()
    # Another file under the key is refused.
    reused = await upload(http, headers, "order_line", [HEADER, GOOD[0]])
    assert reused.status_code == 422, reused.text
    assert reused.json()["errors"][0]["field"] == "header.Idempotency-Key"
    # The same rows again without the key are duplicates, as in JSON.
    again = await upload(http, tenant.headers, "order_line", [HEADER, *GOOD])
    assert again.json() == {"accepted": 0, "duplicates": 2}


async def test_bad_rows_are_named_by_file_line(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    lines = [
        HEADER,
        GOOD[0],
        "erp-3,amazon,acme-us,US,A3,1,,two,10.00,,USD,shipped,2026-03-01T18:00:00Z",
        "erp-4,amazon,acme-us,US,A4,1,LAMP,1,ten,,USD,lost,2026-03-01T18:00:00Z",
    ]
    response = await upload(http, tenant.headers, "order_line", lines)
    assert response.status_code == 422
    found = {(e["row"], e["index"], e["field"]) for e in response.json()["errors"]}
    assert {
        (3, 1, "payload.sku"),
        (3, 1, "payload.quantity"),
        (4, 2, "payload.unit_price.amount"),
        (4, 2, "payload.status"),
    } <= found
    assert not any(e["row"] == 2 for e in response.json()["errors"])
    # Nothing of the file was stored.
    fixed = await upload(http, tenant.headers, "order_line", [HEADER, GOOD[0]])
    assert fixed.json() == {"accepted": 1, "duplicates": 0}


async def test_a_bad_date_is_named_once_not_again_as_the_occurred_at_taken_from_it(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A file without an occurred_at column takes it from the row's date: a bad date is
    the row's one error, not also a column the file does not have."""
    tenant = await new_tenant(scopes=["ingest:write"])
    header = "event_id,platform,store_id,marketplace,date,sku,warehouse,on_hand"
    lines = [
        header,
        "i1,amazon,acme-us,US,2026-04-01,LAMP,W1,5",
        "i2,amazon,acme-us,US,2026-04-31,LAMP,W1,5",
    ]
    response = await upload(http, tenant.headers, "inventory_snapshot", lines)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["row"], error["index"], error["field"]) == (3, 1, "payload.date")
    # A file with an occurred_at of its own hears of both cells it got wrong.
    lines = [
        f"{header},occurred_at",
        "i3,amazon,acme-us,US,2026-04-31,LAMP,W1,5,yesterday",
    ]
    response = await upload(http, tenant.headers, "inventory_snapshot", lines)
    assert response.status_code == 422, response.text
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["occurred_at", "payload.date"]


async def test_empty_required_cells_are_named_required_and_only_themselves(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    lines = [
        "event_id,platform,store_id,marketplace,date,sku,sessions",
        "t1,,acme-us,US,2026-03-01,LAMP,1",
        "t2,amazon,,US,2026-03-01,LAMP,1",
        "t3,amazon,acme-us,US,,LAMP,1",
    ]
    response = await upload(http, tenant.headers, "traffic", lines)
    assert response.status_code == 422, response.text
    assert [(e["row"], e["field"], e["reason"]) for e in response.json()["errors"]] == [
        (2, "source.platform", "required"),
        (3, "source.store_id", "required"),
        (4, "payload.date", "required"),
    ]


async def test_a_count_that_is_no_whole_number_is_told_so_in_a_files_terms(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    counts = ("2.0", "abc", "1e400", "9" * 30, "9" * 5000)
    lines = [HEADER, *(GOOD[0].replace(",2,", f",{count},", 1) for count in counts)]
    response = await upload(http, tenant.headers, "order_line", lines)
    assert response.status_code == 422, response.text
    assert [(e["row"], e["field"], e["reason"]) for e in response.json()["errors"]] == [
        (2, "payload.quantity", "must be a whole number"),
        (3, "payload.quantity", "must be a whole number"),
        (4, "payload.quantity", "must be a whole number"),
        (5, "payload.quantity", "must be at most 2147483647"),
        # Beyond the digits Python converts: as large, not as no number.
        (6, "payload.quantity", "is too large a number"),
    ]


async def test_unknown_columns_type_and_empty_files_are_refused(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    extra = await upload(http, tenant.headers, "order_line", [HEADER + ",colour", GOOD[0] + ",red"])
    assert extra.status_code == 422
    assert extra.json()["errors"] == [{"field": "colour", "reason": "unknown column", "row": 1}]
    kind = await upload(http, tenant.headers, "sale", [HEADER, GOOD[0]])
    assert kind.status_code == 422
    assert kind.json()["errors"][0]["field"] == "type"
    empty = await upload(http, tenant.headers, "order_line", [HEADER])
    assert empty.status_code == 422
    too_many = await upload(
        http,
        tenant.headers,
        "traffic",
        ["event_id,platform,store_id,marketplace,date,sku,sessions"]
        + [f"t{i},amazon,s,US,2026-03-01,S,1" for i in range(5001)],
    )
    assert too_many.status_code == 413


async def test_other_types_convert_counts_dates_and_flags(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    ads = await upload(
        http,
        tenant.headers,
        "ad_spend",
        [
            "event_id,platform,store_id,marketplace,date,campaign_id,sku,impressions,clicks,cost,attributed_sales,currency,attributed_orders",
            "ad-1,amazon,acme-us,US,2026-03-01,camp,LAMP,1000,25,12.50,80.00,USD,3",
        ],
    )
    assert ads.status_code == 202, ads.text
    shipments = await upload(
        http,
        tenant.headers,
        "shipment",
        [
            "event_id,platform,store_id,marketplace,order_id,promised_ship_by,shipped_at,tracking_valid",
            "sh-1,amazon,acme-us,US,A1,2026-03-02T00:00:00Z,2026-03-01T12:00:00Z,true",
            "sh-2,amazon,acme-us,US,A2,2026-03-02T00:00:00Z,,maybe",
        ],
    )
    assert shipments.status_code == 422
    assert [(e["row"], e["field"]) for e in shipments.json()["errors"]] == [
        (3, "payload.tracking_valid")
    ]


def test_rows_are_the_lines_a_record_starts_on() -> None:
    # A quoted cell spanning lines and a blank line both shift the lines after them.
    text = "\n".join(
        [
            HEADER,
            '"erp-1",amazon,acme-us,US,A1,1,"LAMP',
            'DELUXE",2,10.00,,USD,shipped,2026-03-01T18:00:00Z',
            "",
            GOOD[1],
        ]
    )
    batch = parse_csv(text.encode(), "order_line", 10)
    assert batch.rows == [2, 5]
    assert batch.events[0]["payload"]["sku"] == "LAMP\nDELUXE"


async def test_a_bad_record_after_a_multi_line_cell_is_named_by_its_own_line(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    lines = [
        HEADER,
        'erp-1,amazon,acme-us,US,A1,1,"LAMP',
        'DELUXE",2,10.00,,USD,shipped,2026-03-01T18:00:00Z',
        "",
        "erp-2,amazon,acme-us,US,A2,1,MUG,1,5.25,,USD,lost,2026-03-02T18:00:00Z",
    ]
    response = await upload(http, tenant.headers, "order_line", lines)
    assert response.status_code == 422
    assert [(e["row"], e["index"], e["field"]) for e in response.json()["errors"]] == [
        (5, 1, "payload.status")
    ]


def test_header_cells_are_trimmed_as_every_cell_is() -> None:
    padded = ", ".join(f" {column} " for column in HEADER.split(","))
    batch = parse_csv(f"{padded}\n{GOOD[0]}\n".encode(), "order_line", 10)
    assert batch.events[0]["source"]["platform"] == "amazon"
    assert batch.events[0]["payload"]["sku"] == "LAMP"
    # Trimmed, two columns may turn out to be one.
    twice = HEADER.replace("event_id,", "event_id, event_id ,")
    assert _refusal(f"{twice}\ndh1,{GOOD[0]}\n") == [
        (1, "event_id", "appears more than once in the header")
    ]


def test_cells_are_trimmed_as_json_events_are() -> None:
    """A separator (U+001C) is no space to a JSON event: the same SKU from JSON and
    from CSV was two SKUs."""
    row = GOOD[0].replace(",LAMP,", ",\x1cLAMP\u3000,")
    batch = parse_csv(f"{HEADER}\n{row}\n".encode(), "order_line", 10)
    assert batch.events[0]["payload"]["sku"] == "\x1cLAMP"
    # So in the header and in numbers: "\x1cevent_id" is no column of ours, and "\x1c2"
    # no number.
    assert _refusal(f"\x1c{HEADER}\n{GOOD[0]}\n")[0][:2] == (1, "\x1cevent_id")
    # A byte order mark past a name's start is part of it, not dropped.
    marked = HEADER.replace("quantity", "\ufeffquantity\ufeff")
    assert _refusal(f"{marked}\n{GOOD[0]}\n")[0][:2] == (1, "quantity\ufeff")
    with pytest.raises(InvalidInput) as refused:
        parse_csv(f"{marked}\n{GOOD[0]}\n".encode(), "order_line", 10)
    # The detail shows what prints nothing.
    assert "quantityU+FEFF (unknown column)" in refused.value.detail
    row = GOOD[0].replace(",LAMP,2,", ",LAMP,\x1c2,")
    batch = parse_csv(f"{HEADER}\n{row}\n".encode(), "order_line", 10)
    assert batch.events[0]["payload"]["quantity"] == "\x1c2"  # as text: validation names it


def _refusal(text: str, kind: str = "order_line") -> list[tuple[int | None, str, str]]:
    with pytest.raises(InvalidInput) as refused:
        parse_csv(text.encode(), kind, 10)
    return [(e.row, e.field, e.reason) for e in refused.value.errors]


def test_a_column_named_twice_is_refused() -> None:
    header = HEADER.replace("event_id,", "event_id,event_id,")
    assert _refusal(f"{header}\ndh1,{GOOD[0]}\n") == [
        (1, "event_id", "appears more than once in the header")
    ]


def test_column_names_are_read_in_any_case_and_with_spaces_for_underscores() -> None:
    """As ERPs and spreadsheets write them: "Event ID", "STORE_ID", " Purchased At "."""
    written = "Event ID,Platform,STORE_ID,Marketplace,Order Id,line_id,SKU,Quantity,Unit Price,Shipping_Price,Currency,Status, Purchased  At "
    plain = parse_csv(f"{HEADER}\n{GOOD[0]}\n".encode(), "order_line", 10)
    assert parse_csv(f"{written}\n{GOOD[0]}\n".encode(), "order_line", 10) == plain
    # Two names that read the same are one column named twice.
    assert _refusal(f"{HEADER},SKU\n{GOOD[0]},LAMP\n") == [
        (1, "sku", "appears more than once in the header")
    ]


def test_rows_with_more_or_fewer_cells_than_the_header_are_refused() -> None:
    errors = _refusal(f"{HEADER}\n{GOOD[0]},99\nerp-3,amazon,acme-us,US,A3,1\n{GOOD[1]}\n")
    assert errors == [
        (2, "body", "has 14 cells; the header has 13"),
        (3, "body", "has 6 cells; the header has 13"),
    ]


def test_a_row_of_the_wrong_width_hides_no_other_rows_errors() -> None:
    """A file is fixed in one round: the other rows' errors come with the short row's."""
    bad_quantity = GOOD[1].replace(",MUG,1,", ",MUG,many,")
    assert bad_quantity != GOOD[1]
    errors = _refusal(f"{HEADER}\nerp-3,amazon,acme-us,US,A3,1\n{GOOD[0]}\n{bad_quantity}\n")
    assert errors[0] == (2, "body", "has 6 cells; the header has 13")
    assert [(row, field) for row, field, _ in errors[1:]] == [(4, "payload.quantity")]


def test_what_spreadsheets_leave_around_the_data_is_no_data() -> None:
    """Rows of nothing but separators or spaces, and a separator ending the header and
    every row (an unnamed column, empty throughout), as spreadsheets save them."""
    text = "\n".join([f"{HEADER},", f"{GOOD[0]},", "   ", ",,,,,,,,,,,,,", f"{GOOD[1]}, ", ",,"])
    batch = parse_csv(f"{text}\n".encode(), "order_line", 10)
    assert batch.rows == [2, 5]
    assert [e["event_id"] for e in batch.events] == ["erp-1", "erp-2"]
    # An unnamed column with something in it is still a row too long.
    assert _refusal(f"{HEADER},\n{GOOD[0]},99\n") == [
        (2, "body", "has 14 cells; the header has 13")
    ]


def test_a_currency_column_is_refused_where_no_field_is_money() -> None:
    header = "event_id,platform,store_id,marketplace,sku,date,sessions,page_views,currency"
    row = "t1,amazon,acme-us,US,LAMP,2026-03-01,10,20,XXX"
    assert _refusal(f"{header}\n{row}\n", "traffic") == [(1, "currency", "unknown column")]


def test_two_currency_columns_that_disagree_are_refused() -> None:
    header = HEADER.replace("currency", "unit_price_currency,currency")
    row = GOOD[0].replace("USD", "EUR,USD")
    assert _refusal(f"{header}\n{row}\n") == [
        (2, "payload.unit_price.currency", "unit_price_currency (EUR) and currency (USD) disagree")
    ]
    # Both columns saying the same is no contradiction.
    agreeing = parse_csv(
        f"{header}\n{GOOD[0].replace('USD', 'USD,USD')}\n".encode(), "order_line", 10
    )
    assert agreeing.events[0]["payload"]["unit_price"] == {"amount": "10.00", "currency": "USD"}


def test_missing_columns_are_named_once_for_the_header() -> None:
    header = "event_id,platform,marketplace,order_id,amount,refunded_at"
    rows = "".join(f"r{i},amazon,US,A1,3.00,2026-03-01T18:00:00Z\n" for i in range(3))
    assert _refusal(f"{header}\n{rows}", "refund") == [
        (1, "store_id", "missing column"),
        (1, "amount_currency", "missing column (or one currency column)"),
    ]
    # An optional column may be left out; a required one's empty cell is the row's fault.
    batch = parse_csv(
        f"{header},store_id,currency\nr1,amazon,US,A1,3.00,2026-03-01T18:00:00Z,s,\n".encode(),
        "refund",
        10,
    )
    _, errors = validate_batch(batch.events)
    assert [(e.field, e.reason) for e in errors] == [("payload.amount.currency", "required")]


def test_text_the_csv_module_cannot_read_is_refused_naming_the_line() -> None:
    unterminated = _refusal(f'{HEADER}\n{GOOD[0]}\n"erp-2,amazon,acme-us\n')
    assert unterminated == [(3, "body", "unexpected end of data")]
    stray = _refusal(f'{HEADER}\n"erp-1"x,{GOOD[0]}\n')
    assert [(row, field) for row, field, _ in stray] == [(2, "body")]
    huge = _refusal(f"{HEADER}\n{GOOD[0]}\n{'x' * 200_000},{GOOD[1]}\n")
    assert [(row, field) for row, field, _ in huge] == [(3, "body")]
    assert "field larger than field limit" in huge[0][2]


def test_counts_in_other_scripts_digits_are_refused() -> None:
    rows = [
        GOOD[0].replace(",2,", f",{quantity},", 1)
        for quantity in ("\uff11\uff12", "\u0663", "1_0", "9" * 5000)
    ]
    batch = parse_csv(f"{HEADER}\n{chr(10).join(rows)}\n".encode(), "order_line", 10)
    _, errors = validate_batch(batch.events)
    assert [(e.index, e.field) for e in errors] == [(i, "payload.quantity") for i in range(4)]
    # Spreadsheet cells keep their spaces around a number; that much is read.
    spaced = parse_csv(
        f"{HEADER}\n{GOOD[0].replace(',2,', ', 2 ,', 1)}\n".encode(), "order_line", 10
    )
    assert spaced.events[0]["payload"]["quantity"] == 2
    # A quoted cell after a padding space is read quoted, not with its quotes as data.
    padded = GOOD[0].replace(",US,", ', "US",', 1)
    quoted = parse_csv(f"{HEADER}\n{padded}\n".encode(), "order_line", 10)
    assert quoted.events[0]["source"]["marketplace"] == "US"
    # And after its closing quote, before the separator or the line end.
    padded = GOOD[0].replace(",US,", ', "US" \t,', 1) + ',\t"Lamps, ""big""" '
    quoted = parse_csv(f"{HEADER},category\n{padded}\r\n".encode(), "order_line", 10)
    assert quoted.events[0]["source"]["marketplace"] == "US"
    assert quoted.events[0]["payload"]["category"] == 'Lamps, "big"'


def test_a_compact_date_in_a_timestamp_cell_is_refused_not_read_as_seconds() -> None:
    compact = GOOD[0].replace("2026-03-01T18:00:00Z", "20260301")
    batch = parse_csv(f"{HEADER}\n{compact}\n".encode(), "order_line", 10)
    _, errors = validate_batch(batch.events)
    assert [(e.index, e.field) for e in errors] == [(0, "payload.purchased_at")]


def test_a_type_column_names_the_uploads_type_or_is_refused() -> None:
    """A file written from whole events has a type column: read when it agrees."""
    header = HEADER.replace("event_id,", "event_id,type,", 1)
    rows = [f"erp-1,order_line,{GOOD[0].split(',', 1)[1]}", f"erp-2,fee,{GOOD[1].split(',', 1)[1]}"]
    batch = parse_csv(f"{header}\n{rows[0]}\n".encode(), "order_line", 10)
    assert validate_batch(batch.events)[1] == []
    assert batch.events[0]["type"] == "order_line"
    # A blank cell names no type either.
    blank = f"erp-3,,{GOOD[1].split(',', 1)[1]}"
    assert _refusal(f"{header}\n{rows[0]}\n{rows[1]}\n{blank}\n") == [
        (3, "type", "must be order_line, the type this upload is of"),
        (4, "type", "must be order_line, the type this upload is of"),
    ]


async def test_the_api_document_lists_each_types_columns(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    described = document["paths"]["/v1/events:csv"]["post"]["description"]
    assert "- `fee`: **event_id**, type, version" in described
    assert "**unit_price** + **unit_price_currency** (or one currency column)" in described


def test_padding_after_a_closing_quote_leaves_other_quotes_as_they_are() -> None:
    # Quotes inside an unquoted cell are data, padding after them too.
    row = GOOD[0].replace(",US,", ',"US" ,', 1) + ',Lamp "big" '
    batch = parse_csv(f"{HEADER},category\n{row}\n".encode(), "order_line", 10)
    assert batch.events[0]["payload"]["category"].strip() == 'Lamp "big"'
    # What follows a closing quote that is not padding is for the csv module to refuse.
    assert _refusal(f'{HEADER}\n"erp-1" x,{GOOD[0]}\n')[0][:2] == (2, "body")
    assert _refusal(f'{HEADER}\n"erp-1" ,{GOOD[0][6:]},"x"y\n')[0][:2] == (2, "body")
    # Named on its own line, whatever padding the lines before it hold.
    padded = GOOD[0].replace(",US,", ', "US" ,', 1)
    assert _refusal(f'{HEADER}\n{padded}\n"erp-2" x,{GOOD[0][6:]}\n')[0][:2] == (3, "body")


def test_excels_separator_line_is_no_header() -> None:
    """Excel writes a first line ``sep=,`` (ERP exports made for Excel carry it)."""
    hinted = parse_csv(f"sep=,\r\n{HEADER}\r\n{GOOD[0]}\r\n".encode(), "order_line", 10)
    assert [event["event_id"] for event in hinted.events] == ["erp-1"]
    assert hinted.rows == [3]  # the file's own line numbers
    # Old spreadsheets end lines in a bare CR.
    bare_cr = parse_csv(f"sep=,\r{HEADER}\r{GOOD[0]}\r".encode(), "order_line", 10)
    assert [event["event_id"] for event in bare_cr.events] == ["erp-1"]
    with pytest.raises(InvalidInput, match="separated by nothing"):
        parse_csv(f"sep=\n{HEADER}\n{GOOD[0]}\n".encode(), "order_line", 10)
    assert _refusal(f"sep=;\n{HEADER}\n{GOOD[0]}\n") == [
        (1, "body", "columns are separated by commas")
    ]
    assert _refusal(f"sep=;;;;\n{HEADER}\n{GOOD[0]}\n") == [
        (1, "body", "columns are separated by commas")
    ]
    # Kept as a cell by a spreadsheet that knew nothing of it, and saved again: quoted,
    # or padded with a separator for each column.
    for hint in ('"sep=,"', "sep=,,,,,,,,,,,,", '"sep=,",,,,', "SEP=,", "sep=, "):
        saved = parse_csv(f"{hint}\r\n{HEADER}\r\n{GOOD[0]}\r\n".encode(), "order_line", 10)
        assert saved.rows == [3], hint
    # A byte order mark inside the first quoted name is none of it.
    marked = parse_csv(f'"\ufeffEvent ID"{HEADER[8:]}\n{GOOD[0]}\n'.encode(), "order_line", 10)
    assert marked.events[0]["event_id"] == "erp-1"


NOT_UTF8 = (
    "the file is not UTF-8 text: line 3 holds the byte 0xC9: save it as UTF-8 (Excel: CSV "
    "UTF-8); only a file Excel saved in a Chinese locale (GBK) may instead be sent with "
    "Content-Type: text/csv; charset=gb18030"
)


def test_a_file_not_in_utf8_is_refused_naming_the_line_of_the_byte() -> None:
    latin1 = f"{HEADER}\n{GOOD[0]}\n{GOOD[1].replace('MUG', 'CAFÉ')}\n".encode("latin-1")
    with pytest.raises(InvalidInput) as refused:
        parse_csv(latin1, "order_line", 10)
    assert refused.value.detail == NOT_UTF8
    assert [(e.row, e.field) for e in refused.value.errors] == [(3, "body")]
    # After a byte order mark too (the decoder counts from after it).
    with pytest.raises(InvalidInput) as marked:
        parse_csv(b"\xef\xbb\xbf" + latin1, "order_line", 10)
    assert marked.value.detail == NOT_UTF8
    # Lines that end in a bare CR, or CRLF, are counted as the reader counts them.
    for ending in ("\r", "\r\n"):
        lines = [HEADER, GOOD[0], GOOD[1].replace("MUG", "CAFÉ")]
        with pytest.raises(InvalidInput) as old_mac:
            parse_csv((ending.join(lines) + ending).encode("latin-1"), "order_line", 10)
        assert old_mac.value.detail == NOT_UTF8, repr(ending)
    # UTF-16 or UTF-32 without a byte order mark is valid UTF-8 byte by byte, a NUL
    # after each letter: refused at its first NUL, not as 24 unknown columns.
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):
        wide = f"{HEADER}\n{GOOD[0]}\n".encode(encoding)
        with pytest.raises(InvalidInput) as refused:
            parse_csv(wide, "order_line", 10)
        assert refused.value.detail.startswith(
            "the file is not UTF-8 text: line 1 holds the byte 0x00"
        )
        assert [(e.row, e.field) for e in refused.value.errors] == [(1, "body")], encoding


def test_a_file_excel_saved_in_a_chinese_locale_is_read_when_declared_gb18030() -> None:
    chinese = GOOD[1].replace("MUG", "马克杯")
    gbk = f"{HEADER}\r\n{GOOD[0]}\r\n{chinese}\r\n".encode("gbk")
    batch = parse_csv(gbk, "order_line", 10, "gb18030")
    assert [e["payload"]["sku"] for e in batch.events] == ["LAMP", "马克杯"]
    # As UTF-8 it is refused, saying how to send it.
    with pytest.raises(InvalidInput, match="charset=gb18030"):
        parse_csv(gbk, "order_line", 10)
    # Excel on Chinese Windows writes the euro sign as the one byte 0x80.
    euro = parse_csv(gbk.replace(b"LAMP", b"LAMP\x80"), "order_line", 10, "gb18030")
    assert euro.events[0]["payload"]["sku"] == "LAMP€"
    # Bytes no GB18030 text holds are named by their line.
    with pytest.raises(InvalidInput) as refused:
        parse_csv(gbk.replace(b"\r\nerp-2", b"\r\n\xffrp-2"), "order_line", 10, "gb18030")
    assert refused.value.detail == "the file is not GB18030 text: line 3 holds the byte 0xFF"
    # A UTF-8 file declared GB18030 would be stored garbled: refused, saying so.
    utf8 = f"{HEADER}\n{chinese}\n".encode()
    with pytest.raises(InvalidInput) as mislabelled:
        parse_csv(utf8, "order_line", 10, "gb18030")
    assert mislabelled.value.detail == (
        "the file is UTF-8 text, though declared a Chinese code page (GB18030, GBK or "
        "GB2312): send it as UTF-8 (charset=utf-8, or none)"
    )
    assert [e.field for e in mislabelled.value.errors] == ["header.Content-Type"]
    # GBK words whose bytes happen to be UTF-8 of two-byte characters are GBK still.
    for word in ("女装", "母婴", "食品", "鞋"):
        short = f"{HEADER}\r\n{GOOD[0].replace('LAMP', word)}\r\n".encode("gbk")
        assert short.decode("utf-8")  # valid UTF-8, and yet GBK
        batch = parse_csv(short, "order_line", 10, "gb18030")
        assert batch.events[0]["payload"]["sku"] == word


async def test_a_json_push_sent_to_the_csv_route_is_415(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    refused = await http.post(
        "/v1/events:csv",
        params={"type": "order_line"},
        content=("\n".join([HEADER, GOOD[0]]) + "\n").encode(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert refused.status_code == 415, refused.text
    assert refused.json()["errors"] == [
        {"field": "header.Content-Type", "reason": "must be text/csv (the file itself as the body)"}
    ]
    # A form's upload (curl -F file=@x.csv): its boundary would be read as the header.
    form = await http.post(
        "/v1/events:csv",
        params={"type": "order_line"},
        files={"file": ("x.csv", "\n".join([HEADER, GOOD[0]]) + "\n", "text/csv")},
        headers=tenant.headers,
    )
    assert form.status_code == 415, form.text
    # A JSON push under any JSON type is no CSV either.
    for media in ("application/vnd.api+json", "application/problem+json", "text/json"):
        as_json = await http.post(
            "/v1/events:csv",
            params={"type": "order_line"},
            content=b'{"events": []}',
            headers={**tenant.headers, "Content-Type": media},
        )
        assert as_json.status_code == 415, (media, as_json.text)
    assert "not multipart/form-data" in form.json()["detail"]
    # curl's --data-binary @file.csv sends the form type: a file all the same.
    taken = await http.post(
        "/v1/events:csv",
        params={"type": "order_line"},
        content=("\n".join([HEADER, GOOD[0]]) + "\n").encode(),
        headers={**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert taken.status_code == 202, taken.text


async def test_lines_ending_in_a_bare_cr_are_read_as_lines(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    # As old spreadsheets on macOS save a file.
    batch = parse_csv(("\r".join([HEADER, *GOOD]) + "\r").encode(), "order_line", 5000)
    assert [e["event_id"] for e in batch.events] == ["erp-1", "erp-2"]
    assert batch.rows == [2, 3]
    tenant = await new_tenant(scopes=["ingest:write"])
    bad = GOOD[1].replace(",1,5.25,", ",two,5.25,")
    response = await http.post(
        "/v1/events:csv",
        params={"type": "order_line"},
        content="\r".join([HEADER, GOOD[0], bad]).encode(),
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "index": 1,
            "row": 3,
            "field": "payload.quantity",
            "reason": response.json()["errors"][0]["reason"],
        }
    ]


def test_a_semicolon_file_is_told_so_whatever_ends_its_lines_or_comes_before_it() -> None:
    """The check read the text up to the first LF: with bare CR endings that was the
    whole file, whose decimal commas hid the semicolons."""
    header = "event_id;platform;store_id;marketplace;order_id;amount;currency;refunded_at"
    row = "e1;amazon;s1;DE;o1;1,50;EUR;2026-03-05T00:00:00Z"
    for text, line in (
        (f"{header}\r{row}\r", 1),
        (f"\n{header}\n{row}\n", 2),
        (f";;;\r\n\r\n{header}\r\n{row}\r\n", 3),
    ):
        with pytest.raises(InvalidInput) as refused:
            parse_csv(text.encode(), "refund", 10)
        assert "columns are separated by commas" in refused.value.detail, text
        assert [e.row for e in refused.value.errors] == [line], text


def test_a_file_saved_with_semicolons_or_tabs_is_told_so() -> None:
    quoted = ";".join(f'"{name}"' for name in HEADER.split(","))
    for separator, named, header in (
        (";", "';'", HEADER.replace(",", ";")),
        ("\t", "tabs", HEADER.replace(",", "\t")),
        (";", "';'", quoted),
    ):
        lines = [header, GOOD[0].replace(",", separator)]
        with pytest.raises(InvalidInput) as refused:
            parse_csv(("\n".join(lines) + "\n").encode(), "order_line", 5000)
        assert refused.value.detail == (
            f"the header is one column holding {named}: columns are separated by commas"
        )
        assert [(e.field, e.row) for e in refused.value.errors] == [("body", 1)]


def test_a_file_too_wide_or_too_blank_is_refused_unread() -> None:
    wide = HEADER + "".join(f",c{n}" for n in range(200))
    with pytest.raises(InvalidInput) as refused:
        parse_csv((wide + "\n").encode(), "order_line", 5000)
    assert refused.value.errors[0].reason == "at most 100 columns"
    assert len(refused.value.errors) == 1
    blank = HEADER + "\n" + "\n" * 100_001 + GOOD[0] + "\n"
    with pytest.raises(InvalidInput) as refused:
        parse_csv(blank.encode(), "order_line", 5000)
    assert refused.value.errors[0].reason == "at most 100000 blank lines"
    # Empty rows a spreadsheet saved, up to that, are skipped as before.
    spaced = HEADER + "\n" + ",,,,\n" * 1000 + GOOD[0] + "\n"
    assert len(parse_csv(spaced.encode(), "order_line", 5000).events) == 1


def test_an_old_erps_end_of_file_mark_is_no_row() -> None:
    for end in ("\x1a", "\x1a\r\n", "\x1a\n"):
        text = "\n".join([HEADER, *GOOD]) + "\n" + end
        batch = parse_csv(text.encode(), "order_line", 5000)
        assert [e["event_id"] for e in batch.events] == ["erp-1", "erp-2"], repr(end)


def test_a_header_of_many_bad_columns_names_twenty_in_its_detail() -> None:
    header = HEADER + "".join(f",extra_{n}" for n in range(30))
    with pytest.raises(InvalidInput) as refused:
        parse_csv((header + "\n" + GOOD[0] + "\n").encode(), "order_line", 5000)
    assert len(refused.value.errors) == 30
    assert refused.value.detail.endswith("extra_19 (unknown column) and 10 more")


async def test_a_flag_cell_is_told_every_spelling_a_file_may_use(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    refused = await upload(
        http,
        tenant.headers,
        "shipment",
        [
            "event_id,platform,store_id,marketplace,order_id,promised_ship_by,tracking_valid",
            "sh1,amazon,s1,US,oc1,2026-04-12T10:00:00Z,yes",
            "sh2,amazon,s1,US,oc2,2026-04-12T10:00:00Z,maybe",
        ],
    )
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {
            "index": 1,
            "row": 3,
            "field": "payload.tracking_valid",
            "reason": "must be true/false, 1/0 or yes/no",
        }
    ]


def test_an_unnamed_column_is_named_by_its_place() -> None:
    header = HEADER.replace(",line_id,", ",,line_id,").replace(",sku,", ",,sku,")
    row = GOOD[0].replace(",1,LAMP,", ",,1,,LAMP,")
    with pytest.raises(InvalidInput) as refused:
        parse_csv((header + "\n" + row + "\n").encode(), "order_line", 5000)
    assert [(e.field, e.reason) for e in refused.value.errors] == [
        ("column 6", "has no name"),
        ("column 8", "has no name"),
    ]
    assert refused.value.detail.startswith("the header has 2 bad column(s): column 6 (has no name)")


def test_a_row_on_the_calendars_first_day_stands_at_its_first_instant() -> None:
    """A date stands for its 00:00 UTC, which on 1970-01-01 is before the first instant
    an event may have: the row was refused over an occurred_at the file never had."""
    header = "event_id,platform,store_id,marketplace,date,sku,warehouse,on_hand"
    batch = parse_csv(
        f"{header}\nfirst,amazon,s1,US,1970-01-01,A,W,3\nlater,amazon,s1,US,2026-03-01,A,W,3\n".encode(),
        "inventory_snapshot",
        10,
    )
    assert [e["occurred_at"] for e in batch.events] == [
        "1970-01-01T12:00:00Z",
        "2026-03-01T00:00:00Z",
    ]
    assert validate_batch(batch.events)[1] == []
