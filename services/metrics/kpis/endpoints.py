from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from services.metrics.kpis.cache import entity_tag, key_version
from services.metrics.kpis.query import (
    COMPARISONS,
    DIMENSIONS,
    FILTER_OF,
    FILTERS,
    GRAINS,
    MAX_LIMIT,
    KpiQuery,
    marketplace_codes,
    parse_query,
    unsplittable_warning,
)
from services.metrics.kpis.registry import KPIS, describe, reference
from services.metrics.kpis.schemas import KpiCatalog, KpiDefinitionOut, KpiResult
from services.metrics.kpis.service import current_key, run_query
from services.metrics.kpis.tenants import TenantCurrencies
from services.metrics.settings.repository import SettingsRepository
from services.metrics.settings.schemas import KpiSettingsOut
from shared.access import Access, require_access
from shared.code_page_936 import EURO_AS_0X80
from shared.db import Database
from shared.errors import FieldError, InvalidInput, NotAcceptable
from shared.http import DATA_VERSION_HEADER, MOST_ROWS_HEADER
from shared.negotiation import WeightedItem, list_header, weighted_items
from shared.openapi import IF_NONE_MATCH, TAGGED, ErrorBody
from shared.query_lists import join_list, split_list
from shared.service import none_match_holds

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
Reader = Annotated[Access, Depends(require_access("kpi:read"))]


# Where a spreadsheet may start a cell inside a value: Excel in a locale whose list
# separator is ";" (Brazil, most of Europe) splits a comma-separated file there, and a
# quote in mid-cell does not hold a line break together for it.
# A spreadsheet also takes a quote opening a cell for the cell's quoting, and reads
# what follows it.
_CELL_STARTS = re.compile(r"(^|[;\t\r\n])(?=[ \t\"]*[=+\-@'\t\r])")


def _as_text(cell: str) -> str:
    """A dimension's value as a spreadsheet shows it, never run: SKUs and stores come
    from pushed events, and ``=HYPERLINK(...)`` in a SKU would run when the seller opens
    the export. An apostrophe goes before what a spreadsheet would read as a formula
    (OWASP's CSV injection list: ``= + - @``, a tab, a carriage return) wherever a cell
    may start, and before an apostrophe there, so that taking one apostrophe off at
    each such place always gives the value back."""
    return _CELL_STARTS.sub(r"\1'", cell)


def _csv_number(value: float | None) -> str:
    """The shortest text that reads back as the value, never in exponent notation
    (1e-07, 2.1e+24), which spreadsheets and ERP imports may take for text."""
    return "" if value is None else format(Decimal(repr(value)), "f")


def _csv(body: dict[str, Any], group_by: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period", *group_by, "metric", "value", "previous", "change", "currency"])
    for row in body["rows"]:
        dims = [_as_text(d["value"]) for d in row["dimensions"]]
        for value in row["values"]:
            writer.writerow(
                [
                    row["period"],
                    *dims,
                    value["metric"],
                    _csv_number(value["value"]),
                    _csv_number(value["previous"]),
                    _csv_number(value["change"]),
                    # An ERP maps the column to the amount's currency: none for counts
                    # and ratios.
                    (body["currency"] or "") if value["metric"] in _MONEY else "",
                ]
            )
    return out.getvalue()


_MONEY = frozenset(metric for metric, definition in KPIS.items() if definition.unit == "money")


def _string_as(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Documents a parameter read as text by ``parse_query`` (so that its errors are
    ours) as what it must hold."""

    def document(parameter: dict[str, Any]) -> None:
        for branch in parameter.get("anyOf", [parameter]):
            if branch.get("type") == "string":
                branch.update(schema)

    return document


def _one_of(values: Sequence[str]) -> dict[str, Any]:
    """A word of ``values``, read in any case: listed in lower case, as REST writes them,
    and in upper case, as GraphQL's enums do, so that a client checking values against
    the document sends either."""
    return {
        "description": f"One of {', '.join(values)}, in any case",
        "json_schema_extra": _string_as(
            {"enum": [*values, *(v.upper() for v in values if v.upper() != v)]}
        ),
    }


_DATE = {"json_schema_extra": _string_as({"format": "date"})}
_FILTER = "Comma-separated values of {}; quote one holding a comma as in CSV"
# The JSON list of an answer's warnings, on a CSV answer.
WARNINGS_HEADER = "Lodestar-Warnings"
# Clients and proxies refuse a response whose headers pass 8 to 16 KB (Node's http
# 16 KB, nginx's buffers 4 to 8 KB): hundreds of SKUs without a cost must not make the
# CSV unreadable. The JSON answer lists them all.
MAX_WARNINGS_HEADER = 4096


def warnings_header(warnings: list[str]) -> str:
    """The warnings as a JSON list (ASCII: "\u2192"), as many as fit in
    ``MAX_WARNINGS_HEADER`` and then one saying how many more the JSON answer has."""
    text = json.dumps(warnings)
    if len(text) <= MAX_WARNINGS_HEADER:
        return text
    kept: list[str] = []
    for warning in warnings:
        left = len(warnings) - len(kept) - 1
        candidate = [*kept, warning, _more_warnings(left)] if left else [*kept, warning]
        if len(json.dumps(candidate)) > MAX_WARNINGS_HEADER:
            break
        kept.append(warning)
    return json.dumps([*kept, _more_warnings(len(warnings) - len(kept))])


def _more_warnings(count: int) -> str:
    return f"and {count} more warning(s): the JSON answer lists every one"


JSON = "application/json"
CSV = "text/csv"


def _negotiated(accept: str, offered: tuple[str, ...]) -> str:
    """Of the ``offered`` media types, the one the Accept header prefers (RFC 9110
    §12.5.1), the first offered on a tie or when none is given; 406 when the client
    takes none of them."""
    ranges = weighted_items(accept)
    if not ranges:  # a header of none is none
        return offered[0]
    quality = dict.fromkeys(offered, 0.0)
    specificity = dict.fromkeys(offered, -1)
    for media_range in ranges:
        q = media_range.quality
        for candidate in quality:
            kind = candidate.split("/")[0]
            rank = {candidate: 2, f"{kind}/*": 1, "*/*": 0}.get(media_range.name)
            # The most specific range that names a type sets its quality; of several
            # as specific (text/csv in two charsets), the best.
            if rank is not None and (rank, q) > (specificity[candidate], quality[candidate]):
                specificity[candidate], quality[candidate] = rank, q
    best = max(offered, key=lambda media: quality[media])  # the first of equals
    if quality[best] <= 0:
        answered = " or ".join(offered)
        raise NotAcceptable(
            f"the answer is {answered}", [FieldError("header.Accept", f"must accept {answered}")]
        )
    return best


# A CSV answer is UTF-8 unless its Accept range names another charset: GB18030 (of
# which GBK and GB2312 are parts) for Excel in a Chinese locale, which opens a CSV in
# the system's code page and shows UTF-8 Chinese garbled.
_CSV_CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gb18030": "gb18030",
    # As Windows' code page 936 writes it (``_csv_bytes``); GB2312 is a part of it.
    "gbk": "gbk",
    "gb2312": "gbk",
    # UTF-8 led by a byte order mark, by which Excel in any locale (Portuguese,
    # Japanese ...) knows a CSV is UTF-8; ERP imports may choke on it, so only on asking.
    "utf-8-sig": "utf-8-sig",
}


def _csv_bytes(text: str, charset: str) -> tuple[bytes, str]:
    """The CSV answer in ``charset`` and the charset its Content-Type names: GBK asked
    for, an answer holding a character GBK lacks (an emoji, a rare CJK ideograph) is
    GB18030, which has every one and is GBK for all GBK holds."""
    if charset == "gbk":
        try:
            return text.encode("gbk", errors=EURO_AS_0X80), "gbk"
        except UnicodeEncodeError:
            return text.encode("gb18030"), "gb18030"
    return text.encode(charset), charset.removesuffix("-sig")


_CHARSETS_OFFERED = "utf-8, utf-8-sig, gb18030, gbk or gb2312"


def _charset_not_offered() -> NotAcceptable:
    return NotAcceptable(
        f"a CSV answer is in {_CHARSETS_OFFERED}",
        [FieldError("header.Accept", f"a text/csv charset must be {_CHARSETS_OFFERED}")],
    )


def _without_charsets_not_offered(accept: str) -> str:
    """``accept`` without its ``text/csv`` ranges naming a charset not offered: such a
    range takes nothing this route answers, and JSON may still be acceptable. 406 when
    nothing is left of a header that asked for something."""
    ranges = weighted_items(accept)
    kept = [r.text for r in ranges if r.name != CSV or _csv_charset_of(r) is not None]
    if len(kept) < len(ranges) and not kept:
        raise _charset_not_offered()
    return ",".join(kept)


def _csv_charset_of(media_range: WeightedItem) -> str | None:
    """The charset a ``text/csv`` range asks for, as sent (none named is UTF-8); None
    for one not offered."""
    asked = media_range.parameters.get("charset")
    return "utf-8" if asked is None else _CSV_CHARSETS.get(asked.lower())


def _csv_charset(accept: str) -> str:
    """The charset the ``text/csv`` ranges of ``accept`` prefer (by q, the first of
    equals; none named is UTF-8); 406 when every one names a charset not offered or
    refuses it (q=0), rather than an answer the client would read wrong."""
    offered: list[tuple[float, int, str]] = []
    named = False
    for order, media_range in enumerate(weighted_items(accept)):
        if media_range.name != CSV:
            continue
        named = named or "charset" in media_range.parameters
        charset = _csv_charset_of(media_range)
        if charset is not None and media_range.quality > 0:
            offered.append((media_range.quality, -order, charset))
    if offered:
        return max(offered)[2]
    if named:
        raise _charset_not_offered()
    return "utf-8"


_KPIS_DESCRIPTION = f"""KPI values by period and dimensions, as JSON or (`Accept: text/csv`) CSV.

The CSV has one line per row and metric: `period`, one column per `group_by`
dimension, `metric`, `value`, `previous`, `change`, `currency` (empty for counts and
ratios); an empty cell is null, and the answer's warnings come as a JSON list in the
`Lodestar-Warnings` header. It is
UTF-8, or GB18030 when asked for with `Accept: text/csv; charset=gb18030`, or GBK with
`charset=gbk` (or `gb2312`) as Windows' code page 936 writes it (the euro sign as 0x80),
which Excel in a Chinese locale opens as it is (GB18030 when the answer holds a character
GBK has not, as its Content-Type then says); `charset=utf-8-sig` leads the UTF-8 with a
byte order mark, by which Excel in any locale reads it as UTF-8.

An agency names the seller with `tenant_id` and sees only the granted stores; a user
limited to stores, marketplaces or categories sees only those. Totals included; asking
for anything outside is 403. `GET /v1/kpis/catalog` gives each definition as the
tenant's settings make it; with the default settings:

{reference()}
"""


@router.get(
    "",
    response_model=KpiResult,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {
                **TAGGED,
                "Lodestar-Warnings": {
                    "description": "A CSV answer's warnings, as a JSON list of at most "
                    f"{MAX_WARNINGS_HEADER} characters; a longer list ends with one "
                    "saying how many more the JSON answer has",
                    "schema": {"type": "string"},
                },
            },
        },
        304: {
            "description": "`If-None-Match` names the answer's `ETag`: it has not changed",
            "headers": TAGGED,
        },
        406: {"model": ErrorBody, "description": "Accept takes neither JSON nor CSV"},
    },
    description=_KPIS_DESCRIPTION,
    # Read from the request as the lists they are (several lines make one), so declared
    # here rather than as the route's arguments.
    openapi_extra={
        "parameters": [
            {
                "name": "Accept",
                "in": "header",
                "required": False,
                "description": "application/json (the default) or text/csv, by q-values; "
                "text/csv;charset=gb18030 or utf-8-sig for spreadsheets",
                "schema": {"type": "string"},
            },
            IF_NONE_MATCH,
        ]
    },
)
async def kpis(
    request: Request,
    access: Reader,
    metrics: Annotated[str, Query(description="Comma-separated KPI ids, e.g. gmv,orders")],
    from_: Annotated[str, Query(alias="from", description="First local date, inclusive", **_DATE)],
    to: Annotated[str, Query(description="Last local date, inclusive", **_DATE)],
    grain: Annotated[str, Query(**_one_of(GRAINS))],
    group_by: Annotated[
        str | None,
        Query(description=f"Comma-separated, any of {', '.join(DIMENSIONS)}"),
    ] = None,
    platforms: Annotated[str | None, Query(description=_FILTER.format("platform"))] = None,
    stores: Annotated[str | None, Query(description=_FILTER.format("store id"))] = None,
    marketplaces: Annotated[
        str | None, Query(description=_FILTER.format("ISO 3166 country code"))
    ] = None,
    skus: Annotated[str | None, Query(description=_FILTER.format("SKU"))] = None,
    categories: Annotated[str | None, Query(description=_FILTER.format("category"))] = None,
    currency: Annotated[
        str | None,
        Query(description="ISO 4217 code to convert to; default the reporting currency"),
    ] = None,
    compare_to: Annotated[str | None, Query(**_one_of(COMPARISONS))] = None,
    order_by: Annotated[
        str | None,
        Query(description="metric:desc (default) or metric:asc; orders each period's rows"),
    ] = None,
    limit: Annotated[
        str | None,
        Query(
            description="At most this many rows a period",
            json_schema_extra=_string_as({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ),
    ] = None,
) -> Any:
    """See ``_KPIS_DESCRIPTION``, the operation's description in the API document."""
    accept = _without_charsets_not_offered(list_header(request.headers, "accept"))
    csv_wanted = _negotiated(accept, (JSON, CSV)) == CSV
    asked = {"stores": stores, "marketplaces": marketplaces, "categories": categories}
    narrowed = {name: access.narrow(name, _as_kept(name, value)) for name, value in asked.items()}
    # Filters the caller did not write but its limits did (a user limited to categories).
    imposed = {name for name, value in asked.items() if not value and narrowed[name]}
    query = _parsed_within_limits(
        access.tenant_id,
        imposed,
        {
            "metrics": metrics,
            "from": from_,
            "to": to,
            "grain": grain,
            "group_by": group_by,
            "platforms": platforms,
            **{name: join_list(values) if values else None for name, values in narrowed.items()},
            "skus": skus,
            "currency": currency,
            "compare_to": compare_to,
            "order_by": order_by,
            "limit": limit,
        },
    )
    most_rows = request.headers.get(MOST_ROWS_HEADER, "")
    if most_rows.isascii() and most_rows.isdigit() and len(most_rows) < 10:
        query = replace(query, most_rows=max(1, int(most_rows)))
    db: Database = request.app.state.db
    currencies: TenantCurrencies = request.app.state.tenant_currencies
    tenant_currency = (
        None if query.currency else await currencies.reporting_currency(request, access.tenant_id)
    )
    charset = _csv_charset(accept) if csv_wanted else "utf-8"
    representation = ("csv" if charset == "utf-8" else f"csv-{charset}") if csv_wanted else "json"
    if imposed:
        # Its warnings name the caller's limits (``_noting_limits``): other bytes.
        representation += ";limited-" + "-".join(sorted(imposed))
    held = list_header(request.headers, "if-none-match")
    async with db.raw_connection() as conn:
        known = None
        if held.strip():
            known = await current_key(conn, query, tenant_currency)
            etag = entity_tag(known, representation)
            if none_match_holds(held, etag):
                return Response(status_code=304, headers=_validators(etag))
        body, key = await run_query(conn, query, tenant_currency=tenant_currency, key=known)
    body = _noting_limits(body, query, imposed)
    headers = _validators(entity_tag(key, representation))
    # Which state of the tenant's data the answer shows: the gateway asks again for
    # the fields of one GraphQL request that read an older one than their siblings.
    headers[DATA_VERSION_HEADER] = str(key_version(key))
    if csv_wanted:
        # A CSV has no place for them: an empty cell must not pass for a silent zero.
        # Always sent, so that an ERP tells "no warnings" from a header it lost.
        headers[WARNINGS_HEADER] = warnings_header(body["warnings"])
        content, written_in = _csv_bytes(_csv(body, query.group_by), charset)
        return Response(content, media_type=f"text/csv; charset={written_in}", headers=headers)
    # Built by the engine in the documented shape: serialised as is, not validated again.
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def _as_kept(name: str, value: str | None) -> list[str]:
    """A filter's values as events keep them, to hold against the caller's limits: a
    marketplace is upper case ("us" asks for US), as the query reads it."""
    values = split_list(value, name)
    return marketplace_codes(values) if name == "marketplaces" else values


def _parsed_within_limits(
    tenant_id: str, imposed: set[str], params: dict[str, str | None]
) -> KpiQuery:
    """``parse_query``, its errors about a filter the caller's limits imposed saying so:
    a caller that sent no such filter must learn where it comes from."""
    try:
        return parse_query(tenant_id, params)
    except InvalidInput as refused:
        errors = [
            replace(e, reason=f"{e.reason} (this caller is limited to some {e.field})")
            if e.field in imposed
            else e
            for e in refused.errors
        ]
        raise InvalidInput("; ".join(f"{e.field}: {e.reason}" for e in errors), errors) from None


def _noting_limits(body: dict[str, Any], query: KpiQuery, imposed: set[str]) -> dict[str, Any]:
    """The answer with each warning about a metric that cannot be split by a filter
    the caller's limits imposed saying so: a caller that sent no such filter must learn
    where it comes from. The answer cached for every caller is left as it is."""
    limited = {FILTERS[name] for name in imposed}
    notes = {
        unsplittable_warning(metric, dimension): f"{unsplittable_warning(metric, dimension)} "
        f"(this caller is limited to some {FILTER_OF[dimension]})"
        for metric, dimension in query.unsplittable().items()
        if dimension in limited
    }
    if not notes:
        return body
    return {**body, "warnings": [notes.get(w, w) for w in body["warnings"]]}


def _validators(etag: str) -> dict[str, str]:
    """Dashboards, ERPs and the gateway ask the same questions again and again; with
    ``If-None-Match`` an unchanged answer costs them no body to read or parse, and
    costs metrics no computing."""
    return {"ETag": etag, "Vary": "Accept", "Cache-Control": "private, no-cache"}


@router.get(
    "/catalog",
    response_model=KpiCatalog,
    responses={
        200: {"headers": TAGGED},
        304: {
            "description": "`If-None-Match` names the answer's `ETag`: it has not changed",
            "headers": TAGGED,
        },
        406: {"model": ErrorBody, "description": "Accept does not take JSON"},
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
async def catalog(request: Request, access: Reader) -> Response:
    """Every KPI of the contract with its definition as this tenant's settings make it;
    ``available`` ones can be queried. Its ``ETag`` changes with those settings: polled
    with ``If-None-Match``, an unchanged catalog is 304."""
    _negotiated(list_header(request.headers, "accept"), (JSON,))
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        settings = await SettingsRepository(conn).get(access.tenant_id)
    body = _catalog(settings).model_dump_json().encode()
    headers = _validators(f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    if none_match_holds(list_header(request.headers, "if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _catalog(settings: KpiSettingsOut) -> KpiCatalog:
    return KpiCatalog(
        kpis=[
            KpiDefinitionOut(
                id=k.id,
                name=k.name,
                unit=k.unit,
                direction=k.direction,
                description=describe(k, settings),
                available=k.available,
            )
            for k in KPIS.values()
        ]
    )
