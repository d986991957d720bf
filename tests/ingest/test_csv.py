"""CSV upload: the same validation and idempotency as JSON, errors naming file lines."""

from __future__ import annotations

import httpx

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
