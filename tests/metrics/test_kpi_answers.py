"""How a KPI answer is asked for and shaped: parameters at their limits, groups that
only the comparison has, CSV and content negotiation."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line, seed, values

WINDOW = {"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-31", "grain": "total"}


async def test_exactly_three_years_at_day_grain_is_accepted(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    body = await kpis(
        http, tenant, metrics="gmv", grain="day", **{"from": "2023-01-01", "to": "2025-12-31"}
    )
    assert len(body["rows"]) == 1096


async def test_three_years_from_29_february_end_on_28_february(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """From a month's last day the limit is not the last day of the month three years
    on: from 29 February 2020 the range to 28 February 2023 is three years, as from 28
    February 2021 the range to 27 February 2024 is."""
    tenant = await new_tenant(scopes=["kpi:read"])
    for start, end in (("2020-02-29", "2023-02-28"), ("2021-02-28", "2024-02-27")):
        body = await kpis(http, tenant, metrics="gmv", grain="day", **{"from": start, "to": end})
        assert body["rows"][-1]["period"] == end
    for start, end in (("2020-02-29", "2023-03-01"), ("2021-02-28", "2024-02-28")):
        refused = await http.get(
            "/v1/kpis",
            params={"metrics": "gmv", "grain": "day", "from": start, "to": end},
            headers=tenant.headers,
        )
        assert refused.status_code == 422
        assert refused.json()["errors"] == [
            {"field": "to", "reason": "at most 3 years at day grain"}
        ]


async def test_twenty_years_are_calendar_years(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    longest = {"from": "2000-01-01", "to": "2019-12-31"}
    body = await kpis(http, tenant, metrics="gmv", grain="year", **longest)
    assert [row["period"] for row in body["rows"]][-1] == "2019-01-01"
    # Twenty years and a day (5 of the 20 years are leap years).
    refused = await http.get(
        "/v1/kpis",
        params={"metrics": "gmv", "grain": "year", "from": "2000-01-01", "to": "2020-01-01"},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "to", "reason": "at most 20 years"}]


async def test_platform_filters_read_as_events_are_stored(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(http, tenant, [line("p1", "P1", 1, "10.00", "2026-01-10T18:00:00Z")])
    body = await kpis(http, tenant, platforms="Amazon", **WINDOW)
    assert values(body) == [("TOTAL", [], {"gmv": 10.0})]


async def test_a_group_with_nothing_now_but_something_before_has_its_row(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("g1", "G1", 1, "20.00", "2026-01-10T18:00:00Z", store="mx", marketplace="MX"),
            line("g2", "G2", 1, "75.00", "2026-01-10T18:00:00Z"),
            line("g3", "G3", 1, "60.00", "2026-02-10T18:00:00Z"),
        ],
    )
    body = await kpis(
        http, tenant, metrics="gmv,aov", grain="total", group_by="marketplace",
        compare_to="previous_period", **{"from": "2026-02-01", "to": "2026-02-28"},
    )  # fmt: skip
    rows = [(r["dimensions"][0]["value"], r["values"]) for r in body["rows"]]
    assert rows == [
        ("MX", [
            {"metric": "gmv", "value": 0.0, "previous": 20.0, "change": -1.0},
            {"metric": "aov", "value": None, "previous": 20.0, "change": None},
        ]),
        ("US", [
            {"metric": "gmv", "value": 60.0, "previous": 75.0, "change": -0.2},
            {"metric": "aov", "value": 60.0, "previous": 75.0, "change": -0.2},
        ]),
    ]  # fmt: skip
    # Without a comparison a group with no data has no row.
    plain = await kpis(
        http, tenant, metrics="gmv", grain="total", group_by="marketplace",
        **{"from": "2026-02-01", "to": "2026-02-28"},
    )  # fmt: skip
    assert values(plain) == [("TOTAL", ["US"], {"gmv": 60.0})]


async def test_csv_answers_carry_their_warnings_in_a_header(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    mx = line("w1", "W1", 1, "200.00", "2026-01-10T18:00:00Z", currency="MXN", marketplace="MX")
    await seed(http, tenant, [mx])
    response = await http.get(
        "/v1/kpis", params=WINDOW, headers={**tenant.headers, "Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.text.splitlines()[1] == "TOTAL,gmv,,,,USD"
    assert json.loads(response.headers["Lodestar-Warnings"]) == [
        "no FX rate for MXN→USD on 2026-01-10"
    ]


async def test_a_csv_answer_with_hundreds_of_warnings_keeps_its_header_readable(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Each SKU without a cost is a warning, and a Chinese SKU takes six bytes a
    character in the header: 300 of them made a 30 KB header no Node client reads."""
    tenant = await new_tenant()
    skus = [f"无线蓝牙耳机-黑色款式-{n:04}" for n in range(300)]
    await seed(
        http,
        tenant,
        [
            line(f"s{n}", f"S{n}", 1, "1.00", "2026-01-10T18:00:00Z", sku=s)
            for n, s in enumerate(skus)
        ],
    )
    params = {**WINDOW, "metrics": "cogs"}
    listed = await kpis(http, tenant, **params)
    # A hundred named, then the rest counted.
    assert len(listed["warnings"]) == 101
    assert listed["warnings"][-1] == "no unit cost for 200 more SKUs"
    response = await http.get(
        "/v1/kpis", params=params, headers={**tenant.headers, "Accept": "text/csv"}
    )
    assert response.status_code == 200
    header = response.headers["Lodestar-Warnings"]
    assert len(header) <= 4096
    *shown, more = json.loads(header)
    assert shown == listed["warnings"][: len(shown)]
    assert more == f"and {101 - len(shown)} more warning(s): the JSON answer lists every one"
    assert len(shown) > 10


async def test_csv_numbers_are_never_in_exponent_notation(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    huge = line("h1", "H1", 100_000, "999999999999.99", "2026-01-10T18:00:00Z")
    await seed(http, tenant, [huge, line("h2", "H2", 1, "0.01", "2026-01-11T18:00:00Z")])
    params = {**WINDOW, "metrics": "gmv,aov,orders,cancel_rate", "grain": "day", "to": "2026-01-11"}
    response = await http.get(
        "/v1/kpis", params=params, headers={**tenant.headers, "Accept": "text/csv"}
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    cells = {(row["period"], row["metric"]): row["value"] for row in rows}
    # As JSON, 9.9999999999999e+16.
    assert cells["2026-01-10", "gmv"] == "99999999999999000"
    assert cells["2026-01-11", "aov"] == "0.01"
    # The currency column is an amount's: none for a count or a ratio.
    currencies = {row["metric"]: row["currency"] for row in rows}
    assert currencies == {"gmv": "USD", "aov": "USD", "orders": "", "cancel_rate": ""}
    assert json.loads(response.headers["Lodestar-Warnings"]) == []


async def test_csv_cells_from_pushed_text_never_run_as_formulas(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A SKU is whatever a connector or an agency pushed: one starting like a formula
    is written as text, and JSON keeps it as it was."""
    tenant = await new_tenant()
    skus = [
        *("=1+2", "+cmd", "-2+3", "@SUM(A1)", '=HYPERLINK("http://x")', "plain-1", "A;B"),
        # Excel in a ";" locale starts a cell after a ";" or a line break, quoted or not.
        *("x;=1+4;", "a\n=1+7", "b; @c", 'q;"=1+1;y'),
        # Apostrophes where a cell may start get one more: one off gives the value.
        *("'=1+1", "'plain"),
    ]
    at = "2026-01-10T18:00:00Z"
    await seed(
        http,
        tenant,
        [line(f"f{n}", f"F{n}", 1, "10.00", at, sku=sku) for n, sku in enumerate(skus)],
    )
    params = {**WINDOW, "group_by": "sku"}
    response = await http.get(
        "/v1/kpis", params=params, headers={**tenant.headers, "Accept": "text/csv"}
    )
    cells = sorted(row[1] for row in csv.reader(io.StringIO(response.text)) if row[0] == "TOTAL")
    assert cells == sorted(
        [
            *("'=1+2", "'+cmd", "'-2+3", "'@SUM(A1)", """'=HYPERLINK("http://x")"""),
            *("plain-1", "A;B", "x;'=1+4;", "a\n'=1+7", "b;' @c", "''=1+1", "''plain"),
            "q;'\"=1+1;y",
        ]
    )
    # Read as a ";" locale reads the file, no cell is a formula.
    for row in csv.reader(io.StringIO(response.text.replace("\r\n", "\n")), delimiter=";"):
        assert not any(cell.lstrip(' "').startswith(("=", "+", "@")) for cell in row), row
    # Numbers keep their sign: a value is never taken for text.
    assert all(not row[3].startswith("'") for row in csv.reader(io.StringIO(response.text)))
    as_json = await kpis(http, tenant, **params)
    assert sorted(r["dimensions"][0]["value"] for r in as_json["rows"]) == sorted(skus)


async def test_a_csv_answer_in_gb18030_for_excel_in_a_chinese_locale(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(http, tenant, [line("g1", "G1", 1, "10.00", "2026-01-10T18:00:00Z", sku="台灯-白")])
    params = {**WINDOW, "group_by": "sku"}
    answers = {}
    for accept in ("text/csv", "text/csv; charset=GBK", 'text/csv;charset="gb18030"'):
        response = await http.get(
            "/v1/kpis", params=params, headers={**tenant.headers, "Accept": accept}
        )
        assert response.status_code == 200, response.text
        answers[accept] = response
    utf8, gbk, gb18030 = answers.values()
    assert utf8.headers["content-type"] == "text/csv; charset=utf-8"
    assert "台灯-白" in utf8.content.decode("utf-8")
    for chinese, written_in in ((gbk, "gbk"), (gb18030, "gb18030")):
        assert chinese.headers["content-type"] == f"text/csv; charset={written_in}"
        assert chinese.content == utf8.content.decode("utf-8").encode(written_in)
    # Another charset, another tag: a cache never hands one charset's answer for another.
    assert len({answer.headers["etag"] for answer in (utf8, gbk, gb18030)}) == 3
    refused = await http.get(
        "/v1/kpis", params=params, headers={**tenant.headers, "Accept": "text/csv; charset=big5"}
    )
    assert refused.status_code == 406
    offered = "utf-8, utf-8-sig, gb18030, gbk or gb2312"
    assert refused.json()["detail"] == f"a CSV answer is in {offered}"
    assert refused.json()["errors"] == [
        {"field": "header.Accept", "reason": f"a text/csv charset must be {offered}"}
    ]
    # By q, the first of equals; a charset not offered beside one that is, passed over.
    for accept, charset in (
        ("text/csv;charset=utf-8;q=0.5, text/csv;charset=gb18030;q=0.9", "gb18030"),
        ("text/csv;charset=gb18030;q=0.9, text/csv;charset=utf-8", "utf-8"),
        ("text/csv;charset=shift_jis, text/csv;charset=gbk;q=0.5", "gbk"),
        ("text/csv;charset=shift_jis, application/json;q=0.1", None),
        ("text/csv;charset=gb18030;q=0, text/csv;charset=utf-8;q=0.2", "utf-8"),
    ):
        answered = await http.get(
            "/v1/kpis", params=params, headers={**tenant.headers, "Accept": accept}
        )
        assert answered.status_code == 200, (accept, answered.text)
        kind = answered.headers["content-type"]
        if charset is None:
            assert kind == "application/json", accept
        else:
            assert kind == f"text/csv; charset={charset}", accept


async def test_a_gbk_answer_is_written_as_excels_code_page_writes_it(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Windows' code page 936 writes the euro sign as 0x80, where GB18030 has two other
    bytes Excel in a Chinese locale shows garbled; a character GBK has not makes the
    answer GB18030, as its Content-Type says, rather than a server error."""
    gbk = {"Accept": "text/csv; charset=gbk"}
    tenant = await new_tenant()
    await seed(http, tenant, [line("e1", "E1", 1, "10.00", "2026-01-10T18:00:00Z", sku="灯€")])
    params = {**WINDOW, "group_by": "sku"}
    euro = await http.get("/v1/kpis", params=params, headers={**tenant.headers, **gbk})
    assert euro.headers["content-type"] == "text/csv; charset=gbk"
    assert "灯".encode("gbk") + b"\x80" in euro.content
    other = await new_tenant()
    await seed(http, other, [line("e2", "E2", 1, "10.00", "2026-01-10T18:00:00Z", sku="灯😀")])
    beyond = await http.get("/v1/kpis", params=params, headers={**other.headers, **gbk})
    assert beyond.status_code == 200, beyond.text
    assert beyond.headers["content-type"] == "text/csv; charset=gb18030"
    assert "灯😀" in beyond.content.decode("gb18030")


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("", "application/json"),
        ("text/csv", "text/csv"),
        ("TEXT/CSV", "text/csv"),
        ("application/json, text/csv", "application/json"),
        ("application/json;q=0.5, text/csv;q=0.4", "application/json"),
        ("text/csv;q=0, */*", "application/json"),
        ("text/*", "text/csv"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
        ("application/xml", None),
        ("application/json;q=0", None),
        # Empty list elements count for nothing (RFC 9110 §5.6.1).
        (",,,", "application/json"),
        (", text/csv,", "text/csv"),
        # A weight is 0 to 1 (RFC 9110 §12.4.2): above is 1, one that is no number none.
        ("text/csv;q=1.5, application/json", "application/json"),
        ("text/csv;q=abc", "text/csv"),
        ("text/csv;q=-1, application/json;q=0.1", "application/json"),
    ],
)
async def test_the_answer_is_negotiated_by_accept(
    http: httpx.AsyncClient, new_tenant: NewTenant, accept: str, kind: str | None
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    headers: dict[str, Any] = {**tenant.headers, "Accept": accept}
    response = await http.get("/v1/kpis", params=WINDOW, headers=headers)
    if kind is None:
        assert response.status_code == 406
        assert response.json()["error"] == "not_acceptable"
    else:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)


@pytest.mark.parametrize(
    ("accept", "status"), [("", 200), ("*/*", 200), ("text/csv", 406), ("application/xml", 406)]
)
async def test_the_catalog_is_json_only(
    http: httpx.AsyncClient, new_tenant: NewTenant, accept: str, status: int
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    headers = {**tenant.headers, "Accept": accept}
    response = await http.get("/v1/kpis/catalog", headers=headers)
    assert response.status_code == status
    if status == 406:
        assert response.json()["detail"] == "the answer is application/json"
        assert response.json()["errors"] == [
            {"field": "header.Accept", "reason": "must accept application/json"}
        ]


async def test_fx_warnings_name_only_what_the_answer_needed(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    mx = line("x1", "X1", 1, "200.00", "2026-01-10T18:00:00Z", currency="MXN", marketplace="MX")
    mx["source"]["store_id"] = "secret-mx"
    await seed(http, tenant, [line("u1", "U1", 1, "10.00", "2026-01-10T18:00:00Z"), mx])
    everything = await kpis(http, tenant, **WINDOW)
    assert everything["warnings"] == ["no FX rate for MXN→USD on 2026-01-10"]
    # Outside the stores asked for (or granted), and for counts, no rate is needed.
    one_store = await kpis(http, tenant, **{**WINDOW, "stores": "acme-us"})
    assert values(one_store) == [("TOTAL", [], {"gmv": 10.0})]
    assert one_store["warnings"] == []
    assert (await kpis(http, tenant, **{**WINDOW, "marketplaces": "US"}))["warnings"] == []
    assert (await kpis(http, tenant, **{**WINDOW, "skus": "NONE"}))["warnings"] == []
    orders = await kpis(http, tenant, **{**WINDOW, "metrics": "orders,units"})
    assert values(orders) == [("TOTAL", [], {"orders": 2.0, "units": 2.0})]
    assert orders["warnings"] == []


async def test_a_csv_answer_with_a_byte_order_mark_for_excel_in_any_locale(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Excel reads a CSV without a BOM in the system's code page: Portuguese and
    Japanese SKUs show garbled. ``charset=utf-8-sig`` leads the UTF-8 with one."""
    tenant = await new_tenant()
    await seed(
        http, tenant, [line("b1", "B1", 1, "10.00", "2026-01-10T18:00:00Z", sku="LUMINÁRIA-ランプ")]
    )
    params = {**WINDOW, "group_by": "sku"}
    plain, marked = [
        await http.get("/v1/kpis", params=params, headers={**tenant.headers, "Accept": accept})
        for accept in ("text/csv", "text/csv; charset=UTF-8-SIG")
    ]
    assert marked.status_code == 200, marked.text
    assert marked.headers["content-type"] == "text/csv; charset=utf-8"
    assert marked.content == b"\xef\xbb\xbf" + plain.content
    assert "LUMINÁRIA-ランプ" in marked.content.decode("utf-8-sig")
    assert not plain.content.startswith(b"\xef\xbb\xbf")
    assert marked.headers["etag"] != plain.headers["etag"]
