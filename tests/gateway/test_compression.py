"""gzip for large KPI answers, GraphQL and the API document; never for other routes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from services.gateway.app import COMPRESSED_PATHS
from shared.compression import MINIMUM_BYTES, CompressedAnswers, accepts_gzip
from tests.conftest import NewTenant

A_YEAR_BY_DAY = {
    "metrics": "gmv,orders,units,aov,refunds",
    "from": "2026-01-01",
    "to": "2026-12-31",
    "grain": "day",
}


@pytest.mark.parametrize(
    ("accept_encoding", "wanted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("*;q=0.2", True),
        ("gzip;q=0, *", False),
        ("gzip;q=0.000", False),
        ("*;q=0", False),
        ("identity", False),
        ("deflate, br", False),
        ("", False),
    ],
)
def test_gzip_is_taken_as_accept_encoding_weighs_it(accept_encoding: str, wanted: bool) -> None:
    assert accepts_gzip(accept_encoding) is wanted


async def test_a_large_kpi_answer_comes_compressed_with_a_weak_tag_that_still_matches(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    plain = await http.get(
        "/v1/kpis", params=A_YEAR_BY_DAY, headers={**tenant.headers, "Accept-Encoding": "identity"}
    )
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert len(plain.content) > MINIMUM_BYTES
    strong = plain.headers["etag"]
    assert not strong.startswith("W/")

    packed = await http.get(
        "/v1/kpis", params=A_YEAR_BY_DAY, headers={**tenant.headers, "Accept-Encoding": "gzip"}
    )
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()
    # httpx undoes the coding; the bytes sent are gzip, and fewer.
    assert packed.json() == plain.json()
    assert int(packed.headers["content-length"]) < len(plain.content) / 4
    # Another representation, so a weak tag (RFC 9110 §8.8.3) of the same answer.
    assert packed.headers["etag"] == f"W/{strong}"
    # A HEAD tells what its GET would send.
    head = await http.head(
        "/v1/kpis", params=A_YEAR_BY_DAY, headers={**tenant.headers, "Accept-Encoding": "gzip"}
    )
    assert head.status_code == 200 and head.content == b""
    for header in ("content-encoding", "content-length", "etag", "vary"):
        assert head.headers[header] == packed.headers[header], header
    for held in (packed.headers["etag"], strong):
        again = await http.get(
            "/v1/kpis",
            params=A_YEAR_BY_DAY,
            headers={**tenant.headers, "Accept-Encoding": "gzip", "If-None-Match": held},
        )
        assert again.status_code == 304, held
        # The 304 repeats the tag and Vary its 200 had (RFC 9110 §15.4.5), so a cache
        # holding the compressed 200 is freshened by it.
        assert again.headers["etag"] == packed.headers["etag"]
        assert again.headers["vary"] == packed.headers["vary"]
    unchanged = await http.get(
        "/v1/kpis",
        params=A_YEAR_BY_DAY,
        headers={**tenant.headers, "Accept-Encoding": "identity", "If-None-Match": strong},
    )
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == strong
    assert unchanged.headers["vary"] == plain.headers["vary"] == "Accept, Accept-Encoding"

    refused = await http.get(
        "/v1/kpis",
        params=A_YEAR_BY_DAY,
        headers={**tenant.headers, "Accept-Encoding": "gzip;q=0, *"},
    )
    assert "content-encoding" not in refused.headers
    assert refused.content == plain.content


async def test_csv_graphql_and_the_api_document_come_compressed(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    gzip_headers = {**tenant.headers, "Accept-Encoding": "gzip"}
    csv = await http.get(
        "/v1/kpis", params=A_YEAR_BY_DAY, headers={**gzip_headers, "Accept": "text/csv"}
    )
    assert csv.headers["content-encoding"] == "gzip"
    assert csv.text.splitlines()[0].startswith("period,metric,value")

    query = """query($i: KpiQueryInput!) { kpis(input: $i) { rows { period values { metric value } } } }"""
    variables = {
        "i": {
            "metrics": ["gmv", "orders", "units", "aov", "refunds"],
            "from": "2026-01-01",
            "to": "2026-12-31",
            "grain": "DAY",
        }
    }
    answer = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=gzip_headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-encoding"] == "gzip"
    assert len(answer.json()["data"]["kpis"]["rows"]) == 365

    document = await http.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert document.headers["content-encoding"] == "gzip"
    assert "/v1/kpis" in document.json()["paths"]


async def test_small_answers_and_other_routes_are_sent_as_they_are(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    small = await http.get(
        "/v1/kpis",
        params={"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-31", "grain": "total"},
        headers={**tenant.headers, "Accept-Encoding": "gzip"},
    )
    assert small.status_code == 200
    assert "content-encoding" not in small.headers
    # Its tag is weak all the same, as its 304's must be, having no body to decide by.
    assert small.headers["etag"].startswith('W/"')
    assert small.headers["vary"] == "Accept, Accept-Encoding"

    # The OAuth and account routes carry secrets: never compressed (BREACH), however
    # large; nor are paths that only begin like a compressed one.
    large = "x" * (4 * MINIMUM_BYTES)
    app = FastAPI()
    for path in ("/oauth/token", "/v1/tenants", "/v1/kpisx", "/graphqlx", "/v1/kpis/catalog"):
        app.add_api_route(path, lambda: PlainTextResponse(large))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(CompressedAnswers(app, COMPRESSED_PATHS)),
        base_url="http://gateway",
    ) as client:
        for path in ("/oauth/token", "/v1/tenants", "/v1/kpisx", "/graphqlx"):
            sent = await client.get(path, headers={"Accept-Encoding": "gzip"})
            assert sent.text == large
            assert "content-encoding" not in sent.headers, path
        # As README says, any spelling and weight that takes gzip gets it, ``*`` included.
        for taken in ("gzip", "GZIP", "*", "br;q=1, *;q=0.1"):
            catalog = await client.get("/v1/kpis/catalog", headers={"Accept-Encoding": taken})
            assert catalog.headers["content-encoding"] == "gzip", taken
            assert catalog.text == large
