"""Input no route can take gets a 4xx naming where it is, never a 500.

Each case was once a 500 (or a GraphQL INTERNAL) found by black-box probing: a NUL
character reaching PostgreSQL, a header byte the gateway could not forward, a CSV cell
the csv module refuses, a body that is no UTF-8.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import httpx
import pytest

from tests.conftest import NewTenant, Stack, TenantClient
from tests.shared.test_limits import chunks

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
KPIS = "query($i: KpiQueryInput!) { kpis(input: $i) { currency } }"
MONTH = {"metrics": ["gmv"], "from": "2026-01-01", "to": "2026-01-31", "grain": "TOTAL"}
MONTH_REST = {"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-31", "grain": "total"}


def basic(credentials: bytes) -> dict[str, str]:
    return {**FORM, "Authorization": "Basic " + base64.b64encode(credentials).decode()}


@pytest.fixture
async def tenant(new_tenant: NewTenant) -> TenantClient:
    return await new_tenant()


@pytest.mark.parametrize(
    ("path", "header", "status"),
    [
        ("/v1/kpis/catalog", {"Authorization": b"Bearer \xff"}, 401),
        ("/v1/events/outbox", {"Accept": b"\xff"}, 200),
        ("/v1/targets/plans", {"If-None-Match": b"\xff"}, 200),
        ("/v1/kpis/catalog", {"User-Agent": b"\xff"}, 200),
    ],
)
async def test_the_gateway_forwards_header_bytes_it_cannot_decode(
    http: httpx.AsyncClient,
    tenant: TenantClient,
    path: str,
    header: dict[str, bytes],
    status: int,
) -> None:
    merged = {name: value.encode() for name, value in tenant.headers.items()} | header
    answer = await http.get(path, headers=[(k.encode(), v) for k, v in merged.items()])
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        (FORM, b"grant_type=client_credentials&client_id=a%00b&client_secret=b", 400,
         "invalid_request"),
        (basic(b"a\x00b:x"), b"grant_type=client_credentials", 401, "invalid_client"),
        (basic(b"\xff\xfe:\xff"), b"grant_type=client_credentials", 401, "invalid_client"),
        # More fields than a form is read with: RFC 6749's error, not Starlette's.
        (FORM, b"grant_type=client_credentials" + b"&x=1" * 1000, 400, "invalid_request"),
    ],
)  # fmt: skip
async def test_the_token_endpoint_refuses_what_no_client_can_be(
    http: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, error: str
) -> None:
    for endpoint in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        answer = await http.post(endpoint, headers=headers, content=body)
        assert answer.status_code == status, (endpoint, answer.text)
        assert answer.json()["error"] == error, (endpoint, answer.text)


async def test_an_oauth_form_over_64_kib_is_too_large_not_a_bearer_matter(
    http: httpx.AsyncClient,
) -> None:
    """A body over 1 MiB needs a bearer token elsewhere; these endpoints take none."""
    for size in (65_537, 2 * 1024 * 1024):
        body = b"grant_type=client_credentials&x=" + b"a" * size
        answer = await http.post("/oauth/token", headers=FORM, content=body)
        assert answer.status_code == 413, answer.text
        assert answer.json()["errors"] == [{"field": "body", "reason": "at most 65536 bytes"}]
        # Sent chunked, it is counted as it comes.
        chunked = await http.post(
            "/oauth/token", headers=FORM, content=chunks(body[:1000], body[1000:])
        )
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["errors"] == [{"field": "body", "reason": "at most 65536 bytes"}]


async def test_nul_anywhere_in_a_request_is_named(
    http: httpx.AsyncClient, stack: Stack, tenant: TenantClient
) -> None:
    cases: list[tuple[str, str, dict[str, Any] | None, str, int | None]] = [
        ("GET", "/v1/grants/a%00b", None, "path", None),
        ("GET", "/v1/kpis/catalog?tenant_id=a%00b", None, "tenant_id", None),
        ("POST", "/v1/grants", {"agency_tenant_id": "tn_\u0000", "stores": ["s1"],
                                "scopes": ["kpi:read"]}, "agency_tenant_id", None),
        ("POST", "/v1/users", {"email": "a@b.example", "name": "N\u0000", "role": "analyst"},
         "name", None),
        ("POST", "/v1/events", {"events": [{"event_id": "e", "type": "fee", "payload": {
            "nested": ["ok", {"deep": "x\u0000"}]}}]}, "payload.nested.1.deep", 0),
    ]  # fmt: skip
    for method, path, body, field, index in cases:
        answer = await http.request(method, path, json=body, headers=tenant.headers)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["errors"][0]
        assert (error["field"], error.get("index")) == (field, index), answer.text
        assert "NUL" in error["reason"]
    # Sent as JSON in another case, or with no type at all (read as JSON all the same).
    named = json.dumps({"email": "c@b.example", "name": "N\u0000", "role": "analyst"})
    for typed in ({"Content-Type": "APPLICATION/JSON; charset=UTF-8"}, {"Content-Type": ""}):
        answer = await http.post("/v1/users", content=named, headers={**tenant.headers, **typed})
        assert answer.status_code == 422, (typed, answer.text)
        assert answer.json()["errors"][0]["field"] == "name", answer.text
    # Nor in UTF-16 or UTF-32, which a JSON parser would guess and read past the check;
    # JSON is UTF-8, and Latin-1 text is not said to be nested too deeply.
    refused = {"field": "body", "reason": "invalid JSON: not UTF-8"}
    # Without a byte order mark too: UTF-16 of ASCII text is valid UTF-8 byte by byte.
    encodings = ("utf-16", "utf-32", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
    for encoded in (*(named.encode(e) for e in encodings), b'{"name": "Jos\xe9"}'):
        answer = await http.post("/v1/users", content=encoded, headers={**tenant.headers, **JSON})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [refused], answer.text
    without_nul = json.dumps({"name": "acme-16", "reporting_currency": "USD"}).encode("utf-16-le")
    for path in ("/v1/tenants", f"{stack.url('metrics')}/v1/settings/kpi"):
        answer = await http.request(
            "POST" if path == "/v1/tenants" else "PUT",
            path,
            content=without_nul,
            headers={**tenant.headers, **JSON},
        )
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["errors"] == [refused], answer.text
    # A body no route reads (a DELETE's) is not looked at.
    unread = await http.request(
        "DELETE", "/v1/grants/gr_none", content=b'{"x": "\\u0000"}', headers=tenant.headers
    )
    assert unread.status_code == 404, unread.text
    # Directly at a service too: every service has the same guard.
    direct = await http.put(
        f"{stack.url('metrics')}/v1/settings/stores/a%00b",
        json={"timezone": None},
        headers=tenant.headers,
    )
    assert direct.status_code == 422 and direct.json()["errors"][0]["field"] == "path"


async def test_json_nested_too_deep_is_refused_never_a_500(
    http: httpx.AsyncClient, stack: Stack, tenant: TenantClient
) -> None:
    """Both JSON parsers the services use recurse: the standard library's raised
    RecursionError at about a thousand levels, a 500 with no token read."""
    headers = {**tenant.headers, "Content-Type": "application/json"}
    deep_nul = b'{"events": ' + b"[" * 5000 + b'"\\u0000"' + b"]" * 5000 + b"}"
    for url in (f"{stack.url('gateway')}/v1/events", f"{stack.url('ingest')}/v1/events"):
        answer = await http.post(url, content=deep_nul, headers=headers)
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["errors"][0]["field"] == "body", answer.text
    # Without a NUL, a route's own parser gave up on it: 400 "error parsing the body".
    deep = b'{"name": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = await http.post("/v1/users", content=deep, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "body", "reason": "is nested too deeply to read"}]
    anonymous = await http.post("/v1/users", content=deep, headers=JSON)
    assert anonymous.status_code == 401, anonymous.text
    for depth in (1000, 5000):
        nested = b"[" * depth + b"]" * depth
        variables = b'{"query": "{ __typename }", "variables": {"a": ' + nested + b"}}"
        for body in (nested, variables):
            anonymous = await http.post("/graphql", content=body, headers=JSON)
            answer = await http.post("/graphql", content=body, headers=headers)
            # Up to 1,024 levels it is JSON (an unused variable changes nothing).
            assert anonymous.status_code < 500 and answer.status_code < 500, answer.text
            if depth > 1024 or body is nested:
                assert answer.status_code == 400, (depth, answer.text)
                assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_lone_surrogate_in_json_is_named_never_a_500(
    http: httpx.AsyncClient, tenant: TenantClient, new_tenant: NewTenant
) -> None:
    """JavaScript's JSON.stringify writes half an emoji as "\\ud83d": no character, and
    no UTF-8 for PostgreSQL or for a call to another service."""
    agency = await new_tenant()
    half = "\ud83d"
    cases: list[tuple[str, str, dict[str, Any], str, int | None]] = [
        ("POST", "/v1/grants", {"agency_tenant_id": agency.tenant_id, "stores": ["s1"],
                                "scopes": [half]}, "scopes.0", None),
        ("POST", "/v1/connections", {"platform": "shopify", "store_id": "s1",
                                     "marketplace": "US", "granted_scopes": ["read_orders"],
                                     "credentials": {"access_token": half}},
         "credentials.access_token", None),
        ("POST", "/v1/events", {"events": [{"event_id": "e", "type": "fee",
                                            "payload": {half: "x"}}]}, "payload.\\ud83d", 0),
    ]  # fmt: skip
    headers = {**tenant.headers, "Content-Type": "application/json"}
    for method, path, body, field, index in cases:
        # json.dumps escapes it as a browser does; httpx's own encoding would refuse it.
        answer = await http.request(method, path, content=json.dumps(body), headers=headers)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["errors"][0]
        assert (error["field"], error.get("index")) == (field, index), answer.text
        assert "surrogate" in error["reason"]
    # A whole pair is one character (an emoji), and passes.
    whole = {
        "agency_tenant_id": agency.tenant_id,
        "stores": ["s\ud83d\ude00"],
        "scopes": ["kpi:read"],
    }
    granted = await http.post("/v1/grants", content=json.dumps(whole), headers=headers)
    assert granted.status_code == 201, granted.text
    # In GraphQL, where it failed in the gateway as INTERNAL.
    query = {"query": KPIS, "variables": {"i": {**MONTH, "metrics": [half]}}}
    answer = await http.post("/graphql", content=json.dumps(query), headers=headers)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "variables.i.metrics.0"
    # A NUL too, wherever it is, before the token is read (as on every REST route).
    nul = {"query": "{ __typename }", "variables": {"x": "a\u0000"}}
    answer = await http.post("/graphql", json=nul)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "variables.x"


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("PUT", "/v1/settings/stores/a%ffb", "path"),
        ("GET", "/v1/grants/%c3", "path"),
        ("GET", "/v1/kpis/catalog?tenant_id=a%ff", "query"),
    ],
)
async def test_percent_encoded_bytes_that_are_no_utf8_are_refused(
    http: httpx.AsyncClient, tenant: TenantClient, method: str, path: str, field: str
) -> None:
    body = {"timezone": "America/New_York"} if method == "PUT" else None
    answer = await http.request(method, path, json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {"field": field, "reason": "percent-encodes bytes that are no UTF-8 text"}
    ]
    assert (await http.get("/v1/settings/stores", headers=tenant.headers)).json() == {"stores": []}


async def test_a_query_parameter_given_twice_is_refused(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    answer = await http.get(
        "/v1/kpis?metrics=gmv&metrics=orders&from=2026-01-01&to=2026-01-31&grain=total",
        headers=tenant.headers,
    )
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"field": "metrics", "reason": "given more than once; a list takes its values comma-separated"}
    ]  # fmt: skip


async def test_a_csv_cell_the_csv_module_refuses_names_its_line(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    header = b"event_id,platform,store_id,marketplace,fee_type,amount,currency,charged_at\n"
    good = b"f1,amazon,s,US,other,1,USD,2026-01-01T00:00:00Z\n"
    huge = b"x" * 200_000 + b",amazon,s,US,other,1,USD,2026-01-01T00:00:00Z\n"
    answer = await http.post(
        "/v1/events:csv",
        params={"type": "fee"},
        content=header + good + huge,
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["row"] == 3


async def test_graphql_answers_bad_input_as_graphql(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    for document in ("{ kpiCatalog { id ", "{ nope }"):
        answer = await http.post("/graphql", json={"query": document}, headers=tenant.headers)
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", document
    for body in (b"{not json", b'{"variables": {}}'):
        answer = await http.post(
            "/graphql", content=body, headers={**tenant.headers, "Content-Type": "application/json"}
        )
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    not_utf8 = await http.post(
        "/graphql",
        content=b'{"query": "{ kpiCatalog { id } }\xff"}',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert not_utf8.status_code == 400
    assert not_utf8.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    nul_tenant = await http.post(
        "/graphql",
        json={"query": 'query { kpiCatalog(tenantId: "a\\u0000") { id } }'},
        headers=tenant.headers,
    )
    assert nul_tenant.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    long_store = {**MONTH, "filters": {"stores": ["x" * 100_000]}}
    answer = await http.post(
        "/graphql", json={"query": KPIS, "variables": {"i": long_store}}, headers=tenant.headers
    )
    error = answer.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "input.filters.stores" in error["message"]


async def test_a_graphql_date_is_ascii_digits_to_its_end(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    for day in ("\uff12\uff10\uff12\uff16-01-05", "2026-01-05\n"):
        answer = await http.post(
            "/graphql",
            json={"query": KPIS, "variables": {"i": {**MONTH, "from": day}}},
            headers=tenant.headers,
        )
        error = answer.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"].endswith("Expected a date such as 2026-01-31."), error


async def test_graphql_names_what_is_too_long_to_ask_never_internal(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """The question travels on to metrics in a query string: every value may be within
    its own limits while together they pass what HTTP carries."""

    async def refused(**change: Any) -> dict[str, Any]:
        answer = await http.post(
            "/graphql",
            json={"query": KPIS, "variables": {"i": {**MONTH, **change}}},
            headers=tenant.headers,
        )
        error: dict[str, Any] = answer.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (change.keys(), error)
        return error

    # 200 SKUs of 170 Chinese characters each: each one allowed, together 300 KB.
    skus = [f"{n:03d}" + "中" * 167 for n in range(200)]
    error = await refused(filters={"skus": skus})
    assert error["extensions"]["errors"][0]["field"] == "input.filters.skus"
    assert "too long to ask at once" in error["message"]
    for change, field in (
        ({"metrics": ["x" * 70_000]}, "input.metrics"),
        ({"currency": "x" * 70_000}, "input.currency"),
        ({"orderBy": {"metric": "x" * 70_000, "direction": "DESC"}}, "input.orderBy.metric"),
    ):
        error = await refused(**change)
        assert error["extensions"]["errors"][0]["field"] == field, error
    # Within what HTTP carries, long values are answered.
    answered = await http.post(
        "/graphql",
        json={"query": KPIS, "variables": {"i": {**MONTH, "filters": {"skus": skus[:30]}}}},
        headers=tenant.headers,
    )
    assert answered.json()["data"] is not None, answered.text[:600]
    assert answered.json()["data"]["kpis"]["currency"] == "USD", answered.text
    # A tenant id no tenant has is refused unread, and not echoed whole.
    far_too_long = await http.post(
        "/graphql",
        json={
            "query": "query($t: ID) { kpiCatalog(tenantId: $t) { id } }",
            "variables": {"t": "t" * 70_000},
        },
        headers=tenant.headers,
    )
    error = far_too_long.json()["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN" and len(error["message"]) < 200
    # Written into the document, it makes a document over its 32,768 characters.
    inline = 'query { kpiCatalog(tenantId: "%s") { id } }' % ("t" * 70_000)
    too_long = await http.post("/graphql", json={"query": inline}, headers=tenant.headers)
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["message"].startswith("the query has 70,041 characters")


async def test_another_tenants_grants_are_forbidden_not_empty(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """(An agency naming a seller that granted it sees what it received: the access
    matrix covers that.)"""
    answer = await http.get("/v1/grants", params={"tenant_id": "tn_other"}, headers=tenant.headers)
    assert answer.status_code == 403
    own = await http.get(
        "/v1/grants", params={"tenant_id": tenant.tenant_id}, headers=tenant.headers
    )
    assert own.status_code == 200


async def test_graphql_names_the_input_field_metrics_refused(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """Metrics names a field as REST writes it (from, group_by, marketplaces); a GraphQL
    client wrote it in the input, and is told so."""
    refusals = {
        "input.from": {**MONTH, "from": "2026-02-01", "to": "2026-01-01"},
        "input.filters.marketplaces": {**MONTH, "filters": {"marketplaces": ["USA"]}},
        "input.metrics": {**MONTH, "metrics": ["gmv", "no_such_kpi"]},
    }
    for field, refused in refusals.items():
        answer = await http.post(
            "/graphql", json={"query": KPIS, "variables": {"i": refused}}, headers=tenant.headers
        )
        error = answer.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", answer.text
        assert [e["field"] for e in error["extensions"]["errors"]] == [field], answer.text


async def test_a_compressed_body_is_415_naming_its_coding(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """Read as JSON, a gzipped batch was refused as "invalid JSON", and a body labelled br
    but sent plain was taken: neither is what the client said it sent (RFC 9110 §8.4)."""
    batch = {"events": [{"event_id": "gz-1", "type": "fee", "payload": {}}]}
    plain = json.dumps(batch).encode()
    for coding in ("gzip", "br", "identity, gzip"):
        answer = await http.post(
            "/v1/events",
            content=plain,
            headers={
                **tenant.headers,
                "Content-Type": "application/json",
                "Content-Encoding": coding,
            },
        )
        assert answer.status_code == 415, (coding, answer.text)
        assert answer.headers["accept-encoding"] == "identity"
        assert answer.json()["errors"] == [
            {"field": "header.Content-Encoding", "reason": "must be identity (or absent)"}
        ]
    # So is a transfer coding other than chunked, which the server undoes alone: a
    # gzipped body was read as it came, and refused as "not UTF-8".
    packed = gzip.compress(plain)
    host, port = http.base_url.host, http.base_url.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: {tenant.headers['Authorization']}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + f"{len(packed):x}\r\n".encode()
        + packed
        + b"\r\n0\r\n\r\n"
    )
    answered = await reader.read()
    writer.close()
    head, _, body = answered.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 415"), answered
    assert json.loads(body)["errors"] == [
        {"field": "header.Transfer-Encoding", "reason": "must be chunked (or absent)"}
    ]
    by_graphql = await http.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={**tenant.headers, "Content-Encoding": "gzip"},
    )
    assert by_graphql.status_code == 415
    assert by_graphql.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_body_declared_in_another_charset_than_utf8_is_415(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """A Latin-1 JSON body was refused as "invalid JSON", and one merely labelled so was
    taken: JSON is UTF-8 (RFC 8259 §8.1), and so is the CSV the upload reads."""
    body = json.dumps({"events": []}).encode()
    for path, media in (
        ("/v1/events", "application/json; charset=iso-8859-1"),
        ("/v1/events:csv?type=fee", "text/csv; charset=windows-1252"),
        ("/graphql", 'application/json; charset="latin-1"'),
    ):
        answer = await http.post(
            path, content=body, headers={**tenant.headers, "Content-Type": media}
        )
        assert answer.status_code == 415, (path, answer.text)
    refused = await http.post(
        "/v1/events",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json; charset=iso-8859-1"},
    )
    assert refused.json()["errors"] == [
        {"field": "header.Content-Type", "reason": "charset must be utf-8 (or absent)"}
    ]
    # ASCII is a part of UTF-8.
    for charset in ("utf-8", "UTF-8", '"utf-8"', "utf8", "us-ascii"):
        answer = await http.post(
            "/v1/events",
            content=body,
            headers={**tenant.headers, "Content-Type": f"application/json; charset={charset}"},
        )
        # Read, and refused only for what it holds: no event.
        assert answer.status_code == 422, (charset, answer.text)
        assert answer.json()["errors"] == [{"field": "events", "reason": "at least one event"}]
    # A CSV may be GB18030 (or GBK, GB2312), as Excel in a Chinese locale saves it; JSON
    # may not.
    csv_refused = await http.post(
        "/v1/events:csv?type=fee",
        content=body,
        headers={**tenant.headers, "Content-Type": "text/csv; charset=windows-1252"},
    )
    assert csv_refused.json()["detail"] == "the body must be UTF-8 or GB18030, not windows-1252"
    assert csv_refused.json()["errors"] == [
        {"field": "header.Content-Type", "reason": "charset must be utf-8 or gb18030 (or absent)"}
    ]
    json_refused = await http.post(
        "/v1/events",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json; charset=gbk"},
    )
    assert json_refused.status_code == 415, json_refused.text
    header = "event_id,platform,store_id,marketplace,fee_type,amount,currency,charged_at,sku"
    fee = "gbk-fee,amazon,s1,US,commission,1.00,USD,2026-03-01T00:00:00Z,台灯"
    for charset in ("gbk", "GB2312", "gb18030"):
        pushed = await http.post(
            "/v1/events:csv?type=fee",
            content=f"{header}\r\n{fee}\r\n".encode("gbk"),
            headers={**tenant.headers, "Content-Type": f"text/csv; charset={charset}"},
        )
        assert pushed.status_code == 202, (charset, pushed.text)


async def test_a_json_body_starting_with_a_byte_order_mark_is_read(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """.NET's UTF-8 writer starts with one; it was refused as "invalid JSON"."""
    headers = {**tenant.headers, "Content-Type": "application/json"}
    fee = {
        "event_id": "bom-1", "type": "fee", "occurred_at": "2026-01-05T00:00:00Z",
        "source": {"platform": "amazon", "store_id": "s1", "marketplace": "US"},
        "payload": {"fee_type": "commission", "amount": {"amount": "1.00", "currency": "USD"},
                    "charged_at": "2026-01-05T00:00:00Z"},
    }  # fmt: skip
    body = b"\xef\xbb\xbf" + json.dumps({"events": [fee]}).encode()
    pushed = await http.post("/v1/events", content=body, headers=headers)
    assert pushed.status_code == 202, pushed.text
    query = b"\xef\xbb\xbf" + json.dumps({"query": "{ __typename }"}).encode()
    answered = await http.post("/graphql", content=query, headers=headers)
    assert answered.status_code == 200 and answered.json() == {"data": {"__typename": "Query"}}


async def test_a_header_read_as_one_value_given_twice_is_refused(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """Two Idempotency-Keys: keeping the first silently replays, or stores, under a key
    the client may not have meant."""
    batch = json.dumps({"events": [{"event_id": "two-keys", "type": "fee", "payload": {}}]})
    headers = [
        *tenant.headers.items(),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "a"),
        ("Idempotency-Key", "b"),
    ]
    answer = await http.post("/v1/events", content=batch, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {"field": "header.Idempotency-Key", "reason": "given more than once; it takes one value"}
    ]
    twice = [*tenant.headers.items(), *tenant.headers.items()]
    answer = await http.get("/v1/kpis/catalog", headers=twice)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "header.Authorization"


async def test_an_empty_tenant_id_is_named_not_refused_as_a_tenant(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """A form or a variable left empty: 422 naming it, not 403 'no access to tenant '."""
    answer = await http.get(
        "/v1/kpis", params={**MONTH_REST, "tenant_id": ""}, headers=tenant.headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {"field": "tenant_id", "reason": "must not be empty; leave it out for the caller's own"}
    ]
    query = "query($i: KpiQueryInput!, $t: ID) { kpis(input: $i, tenantId: $t) { currency } }"
    variables = {"i": MONTH, "t": ""}
    answered = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=tenant.headers
    )
    body = answered.json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert error["extensions"]["errors"][0]["field"] == "tenantId", body


async def test_a_flag_that_locks_out_or_drops_a_secret_is_true_or_false_only(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """ "yes", "on" or 1 are guesses: as KPI settings and event flags, refused by name."""
    made = await http.post(
        "/v1/users",
        json={"email": "flag@x.example", "name": "F", "password": "p" * 12, "role": "viewer"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    for guess in ("yes", "on", 1):
        disabled = await http.patch(
            f"/v1/users/{made.json()['id']}", json={"disabled": guess}, headers=tenant.headers
        )
        assert disabled.status_code == 422, (guess, disabled.text)
        assert [e["field"] for e in disabled.json()["errors"]] == ["disabled"]
        public = await http.post(
            f"/v1/tenants/{tenant.tenant_id}/clients",
            json={"name": "p", "scopes": ["kpi:read"], "public": guess,
                  "redirect_uris": ["https://app.example.com/cb"]},
            headers=tenant.headers,
        )  # fmt: skip
        assert public.status_code == 422, (guess, public.text)
        assert [e["field"] for e in public.json()["errors"]] == ["public"]
    user = await http.get(f"/v1/users/{made.json()['id']}", headers=tenant.headers)
    assert user.json()["disabled"] is False


async def test_a_name_given_twice_in_any_json_body_is_refused(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """JSON parsers keep the last of two values under one name: a settings change or a
    GraphQL question would have taken one of them without a word, as a push did not."""
    settings = b'{"gmv_includes_tax": true, "gmv_includes_tax": false}'
    refused = await http.put(
        "/v1/settings/kpi", content=settings, headers={**tenant.headers, **JSON}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"field": "gmv_includes_tax", "reason": "given more than once"}
    ]
    question = (
        b'{"query": "query($i: KpiQueryInput!) { kpis(input: $i) { currency } }",'
        b' "variables": {"i": {"metrics": ["gmv"], "metrics": ["orders"], "from": "2026-01-01",'
        b' "to": "2026-01-31", "grain": "TOTAL"}}}'
    )
    # Nor does a deep nesting after it hide it from the check, nor make it a 500.
    deep = b"[" * 1000 + b"]" * 1000
    for body, path in (
        (b'{"a": {"b": 1, "b": 2}, "x": ' + deep + b"}", "/v1/settings/kpi"),
        (b'{"query": "{ __typename }", "query": "{ x: __typename }", "extensions": {"a": '
         + deep + b"}}", "/graphql"),
    ):  # fmt: skip
        method = "PUT" if path.startswith("/v1") else "POST"
        answer = await http.request(method, path, content=body, headers={**tenant.headers, **JSON})
        assert answer.status_code == 422, (path, answer.text)
    asked = await http.post("/graphql", content=question, headers={**tenant.headers, **JSON})
    assert asked.status_code == 422, asked.text
    [error] = asked.json()["errors"]
    assert error["extensions"]["errors"] == [
        {"field": "variables.i.metrics", "reason": "given more than once"}
    ]
    # Sent by GET, the variables are JSON in the query string: read the same way.
    by_get = await http.get(
        "/graphql",
        params={
            "query": "query($i: KpiQueryInput!) { kpis(input: $i) { currency } }",
            "variables": question.split(b'"variables": ', 1)[1][:-1].decode(),
        },
        headers=tenant.headers,
    )
    assert by_get.status_code == 422, by_get.text
    [error] = by_get.json()["errors"]
    assert error["extensions"]["errors"] == [
        {"field": "variables.i.metrics", "reason": "given more than once"}
    ]


async def test_nan_and_infinity_are_no_json_on_any_route(
    http: httpx.AsyncClient, tenant: TenantClient
) -> None:
    """Python's parser, which the routes read bodies with, takes NaN and Infinity as
    numbers: a connection was kept with a NaN in its sealed credentials, and other
    routes named a field's type instead of the body."""
    connection = (
        b'{"platform": "amazon", "store_id": "nan-1", "marketplace": "US",'
        b' "granted_scopes": ["Orders"], "credentials": {"refresh_token": NaN}}'
    )
    for method, path, body in (
        ("POST", "/v1/connections", connection),
        ("PUT", "/v1/settings/kpi", b'{"gmv_includes_tax": -Infinity}'),
        ("POST", "/v1/events", b'{"events": [], "x": Infinity}'),
        ("POST", "/graphql", b'{"query": "{ __typename }", "variables": {"x": NaN}}'),
    ):
        answer = await http.request(method, path, content=body, headers={**tenant.headers, **JSON})
        assert answer.status_code == 422, (path, answer.text)
        errors = answer.json()["errors"]
        if path == "/graphql":
            errors = errors[0]["extensions"]["errors"]
        assert errors == [{"field": "body", "reason": "invalid JSON"}], path
    listed = await http.get("/v1/connections", headers=tenant.headers)
    assert listed.json()["connections"] == []
    # By GET, the variables are the parameter that holds no JSON.
    by_get = await http.get(
        "/graphql",
        params={"query": "{ __typename }", "variables": '{"x": NaN}'},
        headers=tenant.headers,
    )
    assert by_get.status_code == 422, by_get.text
    assert by_get.json()["errors"][0]["extensions"]["errors"] == [
        {"field": "variables", "reason": "invalid JSON"}
    ]


async def test_what_no_route_reads_is_refused_before_the_token_on_every_route(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A name given twice or a NaN is refused first, whatever the token: a route the
    gateway forwards answered 401 first, one it owns 422, for the same body."""
    narrow = await new_tenant(scopes=["kpi:read"])
    tokens: dict[str, dict[str, str]] = {
        "none": {},
        "forged": {"Authorization": "Bearer not.a.token"},
        "lacking the scope": narrow.headers,
    }
    routes = (
        ("POST", "/v1/events"),
        ("PUT", "/v1/settings/kpi"),
        ("POST", "/v1/connections"),
        ("POST", "/v1/users"),
        ("POST", "/v1/grants"),
    )
    for body, error in (
        (b'{"a": 1, "a": 2}', {"field": "a", "reason": "given more than once"}),
        (b'{"a": NaN}', {"field": "body", "reason": "invalid JSON"}),
    ):
        for method, path in routes:
            for token, headers in tokens.items():
                answer = await http.request(method, path, content=body, headers={**headers, **JSON})
                assert answer.status_code == 422, (path, token, answer.text)
                assert answer.json()["errors"] == [error], (path, token, answer.text)
    # Without the JSON type nothing reads it as JSON: the token is answered first.
    plain = await http.post(
        "/v1/connections", content=b'{"a": NaN}', headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 401, plain.text


async def test_whole_number_parameters_are_written_in_digits(
    http: httpx.AsyncClient, tenant: TenantClient, admin_token: str
) -> None:
    """The lenient integer parser took "2026.0", "+2026" and "2_026" for 2026, where the
    KPI routes refuse them: every whole-number parameter reads digits only."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    for path, name, written, headers in (
        ("/v1/tenants", "limit", "100.0", admin),
        ("/v1/tenants", "offset", "+5", admin),
        ("/v1/audit", "limit", "1_0", tenant.headers),
        ("/v1/targets/plans", "year", "2026.0", tenant.headers),
        ("/v1/targets/plans", "year", " 2026", tenant.headers),
    ):
        answer = await http.get(path, params={name: written}, headers=headers)
        assert answer.status_code == 422, (path, written, answer.text)
        assert answer.json()["errors"] == [
            {"field": name, "reason": "must be a whole number written in digits (100, not 100.0 "
             "or +100)"}
        ], (path, written)  # fmt: skip
    for path, name, written, headers in (
        ("/v1/tenants", "limit", "2", admin),
        ("/v1/audit", "limit", "10", tenant.headers),
        ("/v1/targets/plans", "year", "2026", tenant.headers),
    ):
        answer = await http.get(path, params={name: written}, headers=headers)
        assert answer.status_code == 200, (path, written, answer.text)
