"""GraphQL: the contract's types, the REST call behind them, error codes, abuse limits.

The resolvers are tested against a fake metrics service with the REST shapes the
gateway relies on, so these tests hold whatever the real engine computes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.gateway.graphql import kpis as graphql_kpis
from services.gateway.graphql.revalidation import (
    MEMORY,
    AnswerMemory,
    Confirmations,
    Remembered,
)
from services.gateway.graphql.schema import schema
from services.gateway.oauth.minting import mint_access_token
from tests.conftest import NewTenant, Stack, TokenMinter
from tests.gateway.support import fake_service, own_gateway
from tests.unreachable import refusing_port

KPIS = """
query Kpis($input: KpiQueryInput!, $tenantId: ID) {
  kpis(input: $input, tenantId: $tenantId) {
    currency
    rows { period dimensions { key value } values { metric value previous change } }
    warnings
  }
}
"""
CATALOG = "{ kpiCatalog { id name unit direction description } }"

KPI_BODY = {
    "currency": "USD",
    "rows": [
        {
            "period": "2026-01-01",
            "dimensions": [{"key": "marketplace", "value": "US"}],
            "values": [
                {"metric": "gmv", "value": 12.5, "previous": 10.0, "change": 0.25},
                {"metric": "orders", "value": None, "previous": None, "change": None},
            ],
        },
        {"period": "TOTAL", "dimensions": [], "values": [{"metric": "gmv", "value": 12.5}]},
    ],
    "warnings": ["no FX rate for MXN on 2026-01-03"],
}
CATALOG_BODY = {
    "kpis": [
        {
            "id": "gmv",
            "name": "GMV",
            "unit": "money",
            "direction": "up",
            "description": "Gross merchandise value",
        }
    ]
}
# The fake metrics answers by the currency asked for, so each test picks its answer.
FAKE_ANSWERS: dict[str, Response] = {
    "XXX": JSONResponse(
        {
            "error": "invalid_input",
            "detail": "unknown currency XXX",
            "errors": [{"field": "currency", "reason": "unknown currency"}],
        },
        status_code=422,
    ),
    "DENY": JSONResponse({"error": "forbidden", "detail": "no access"}, status_code=403),
    "GONE": JSONResponse({"error": "not_found", "detail": "no such thing"}, status_code=404),
    "BOOM": PlainTextResponse("Traceback (most recent call last): db password", status_code=500),
    "BUSY": JSONResponse(
        {"error": "unavailable", "detail": "a concurrent request held the same data"},
        status_code=503,
        headers={"Retry-After": "1"},
    ),
    "FAST": JSONResponse(
        {"error": "rate_limited", "detail": "too many requests; retry after 3 s"},
        status_code=429,
        headers={"Retry-After": "3"},
    ),
}


@dataclass
class FakeMetrics:
    client: httpx.AsyncClient
    calls: list[dict[str, Any]] = field(default_factory=list)
    # What the fake answers for currency TAGGED: an answer tagged with its version.
    version: int = 1
    deny: bool = False
    # Seconds the fake takes to answer a conditional request.
    confirm_delay: float = 0.0
    # The data versions its answers for currency LANDING show, one a call.
    landing: list[int] = field(default_factory=list)


def tagged_answer(fake: FakeMetrics, request: Request) -> Response:
    """An answer with an ETag, and 304 to a caller that holds it, like metrics."""
    if fake.deny:
        return FAKE_ANSWERS["DENY"]
    etag = f'"v{fake.version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    body = {**KPI_BODY, "warnings": [f"version {fake.version}"]}
    return JSONResponse(body, headers={"ETag": etag})


@pytest.fixture(scope="module")
async def fake(stack: Stack) -> AsyncIterator[FakeMetrics]:
    """A gateway whose metrics service is a fake that records what it was asked."""
    calls: list[dict[str, Any]] = []
    app = FastAPI()

    @app.get("/v1/kpis")
    async def kpis(request: Request) -> Response:
        calls.append({"params": dict(request.query_params), "headers": dict(request.headers)})
        if request.query_params.get("currency") == "LANDING":
            version = faked.landing.pop(0)
            body = {**KPI_BODY, "warnings": [f"version {version}"]}
            return JSONResponse(body, headers={"Lodestar-Data-Version": str(version)})
        if request.query_params.get("currency") == "TAGGED":
            if "if-none-match" in request.headers:
                await asyncio.sleep(faked.confirm_delay)
            return tagged_answer(faked, request)
        return FAKE_ANSWERS.get(request.query_params.get("currency", ""), JSONResponse(KPI_BODY))

    @app.get("/v1/kpis/catalog")
    async def catalog(request: Request) -> Response:
        calls.append({"params": {}, "headers": dict(request.headers)})
        return JSONResponse(CATALOG_BODY)

    async with fake_service(app) as url, own_gateway(stack, metrics_url=url) as client:
        faked = FakeMetrics(client, calls)
        yield faked


async def gql(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, **variables: object
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def month_input(**overrides: object) -> dict[str, object]:
    return {
        "metrics": ["gmv", "orders"],
        "from": "2026-01-01",
        "to": "2026-03-31",
        "grain": "MONTH",
        **overrides,
    }


async def test_schema_has_the_contract_types(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/graphql",
        json={
            "query": """{
              input: __type(name: "KpiQueryInput") { inputFields { name type { name kind ofType { name } } } }
              filters: __type(name: "KpiFilters") { inputFields { name } }
              grain: __type(name: "Grain") { enumValues { name } }
              dimension: __type(name: "Dimension") { enumValues { name } }
              comparison: __type(name: "Comparison") { enumValues { name } }
              date: __type(name: "Date") { kind }
              value: __type(name: "MetricValue") { fields { name type { kind name } } }
              query: __type(name: "Query") { fields { name args { name type { name kind ofType { name } } } } }
            }"""
        },
    )
    data = response.json()["data"]
    fields = {f["name"]: f["type"] for f in data["input"]["inputFields"]}
    # The contract's fields in its order, then this project's extensions (top N).
    assert list(fields) == [
        "metrics", "from", "to", "grain", "groupBy", "filters", "currency", "compareTo",
        "orderBy", "limit",
    ]  # fmt: skip
    assert fields["from"]["ofType"]["name"] == "Date"
    assert [f["name"] for f in data["filters"]["inputFields"]] == [
        "platforms", "stores", "marketplaces", "skus", "categories"
    ]  # fmt: skip
    assert [v["name"] for v in data["grain"]["enumValues"]] == [
        "DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "TOTAL"
    ]  # fmt: skip
    assert [v["name"] for v in data["dimension"]["enumValues"]] == [
        "PLATFORM", "STORE", "MARKETPLACE", "SKU", "CATEGORY"
    ]  # fmt: skip
    assert {v["name"] for v in data["comparison"]["enumValues"]} == {
        "PREVIOUS_PERIOD",
        "PREVIOUS_YEAR",
    }
    assert data["date"]["kind"] == "SCALAR"
    # value, previous and change are nullable floats.
    assert {f["name"]: f["type"] for f in data["value"]["fields"]}["value"] == {
        "kind": "SCALAR",
        "name": "Float",
    }
    kpis = next(f for f in data["query"]["fields"] if f["name"] == "kpis")
    args = {a["name"]: a["type"] for a in kpis["args"]}
    assert args["tenantId"]["name"] == "ID"
    assert args["input"]["kind"] == "NON_NULL"
    assert args["input"]["ofType"]["name"] == "KpiQueryInput"
    assert "kpiCatalog" in {f["name"] for f in data["query"]["fields"]}


async def test_kpis_calls_metrics_rest_and_maps_its_rows(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.calls.clear()
    body = await gql(
        fake.client,
        tenant.headers,
        KPIS,
        input=month_input(
            groupBy=["MARKETPLACE", "SKU"],
            filters={"marketplaces": ["US", "MX"], "skus": ["LAMP-01"], "platforms": ["amazon"]},
            currency="USD",
            compareTo="PREVIOUS_YEAR",
        ),
        tenantId=tenant.tenant_id,
    )
    assert "errors" not in body, body
    assert body["data"]["kpis"] == {
        "currency": "USD",
        "rows": [
            {
                "period": "2026-01-01",
                "dimensions": [{"key": "marketplace", "value": "US"}],
                "values": [
                    {"metric": "gmv", "value": 12.5, "previous": 10.0, "change": 0.25},
                    {"metric": "orders", "value": None, "previous": None, "change": None},
                ],
            },
            {
                "period": "TOTAL",
                "dimensions": [],
                "values": [{"metric": "gmv", "value": 12.5, "previous": None, "change": None}],
            },
        ],
        "warnings": ["no FX rate for MXN on 2026-01-03"],
    }
    [call] = fake.calls
    assert call["params"] == {
        "metrics": "gmv,orders",
        "from": "2026-01-01",
        "to": "2026-03-31",
        "grain": "month",
        "group_by": "marketplace,sku",
        "platforms": "amazon",
        "marketplaces": "US,MX",
        "skus": "LAMP-01",
        "currency": "USD",
        "compare_to": "previous_year",
        "tenant_id": tenant.tenant_id,
    }
    # The caller's own token goes to metrics, which checks it again; with trace context.
    assert call["headers"]["authorization"] == tenant.headers["Authorization"]
    assert "traceparent" in call["headers"]


async def test_a_repeated_query_is_answered_from_memory_while_metrics_says_unchanged(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    other = await new_tenant(scopes=["kpi:read"])
    fake.version, fake.deny = 1, False
    ask = {"input": month_input(currency="TAGGED")}
    first = await gql(fake.client, tenant.headers, KPIS, **ask)
    assert first["data"]["kpis"]["warnings"] == ["version 1"]
    fake.calls.clear()
    hits = MEMORY.hits
    again = await gql(fake.client, tenant.headers, KPIS, **ask)
    # Asked again with the tag it holds; metrics said 304 and the answer is the same.
    assert again == first and MEMORY.hits == hits + 1
    [call] = fake.calls
    assert call["headers"]["if-none-match"] == '"v1"'
    assert call["headers"]["authorization"] == tenant.headers["Authorization"]
    # The same bytes sent as another content type are not the same request.
    fake.calls.clear()
    raw = orjson.dumps({"query": KPIS, "variables": ask})
    plain = await fake.client.post(
        "/graphql", content=raw, headers={**tenant.headers, "Content-Type": "text/plain"}
    )
    assert plain.content != orjson.dumps(first)
    assert all("if-none-match" not in call["headers"] for call in fake.calls)
    # Another caller's token never reaches the first caller's answer.
    fake.calls.clear()
    await gql(fake.client, other.headers, KPIS, **ask)
    assert "if-none-match" not in fake.calls[0]["headers"]
    # Changed data: a new tag, a new answer.
    fake.version = 2
    changed = await gql(fake.client, tenant.headers, KPIS, **ask)
    assert changed["data"]["kpis"]["warnings"] == ["version 2"]
    # A caller who lost access gets the error, not the answer it saw before.
    fake.deny = True
    denied = await gql(fake.client, tenant.headers, KPIS, **ask)
    assert denied["data"] is None
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    fake.deny = False


async def test_a_get_answer_is_never_what_an_empty_post_gets(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """A GET's query is in its URL and its body empty: remembered under its body, every
    GET of a token would stand for an empty POST of the same token."""
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.version, fake.deny = 1, False
    params = {
        "query": KPIS,
        "variables": orjson.dumps({"input": month_input(currency="TAGGED")}).decode(),
    }
    got = await fake.client.get("/graphql", params=params, headers=tenant.headers)
    assert got.status_code == 200 and got.json()["data"]["kpis"]["warnings"] == ["version 1"]
    for _ in range(2):
        empty = await fake.client.post("/graphql", content=b"", headers=tenant.headers)
        assert "data" not in empty.json() or not empty.json()["data"], empty.text
        assert empty.status_code in (400, 415), empty.text


async def test_answers_without_a_tag_are_never_remembered(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    await gql(fake.client, tenant.headers, KPIS, input=month_input())
    fake.calls.clear()
    await gql(fake.client, tenant.headers, KPIS, input=month_input())
    [call] = fake.calls
    assert "if-none-match" not in call["headers"]


async def test_answers_that_read_more_than_tagged_calls_are_never_remembered(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.version, fake.deny = 1, False
    mixed = """query($input: KpiQueryInput!) {
      kpis(input: $input) { currency } __schema { queryType { name } } }"""
    for _ in range(2):
        fake.calls.clear()
        body = await gql(fake.client, tenant.headers, mixed, input=month_input(currency="TAGGED"))
        assert body["data"]["kpis"]["currency"] == "USD"
        [call] = fake.calls
        assert "if-none-match" not in call["headers"]


async def test_identical_requests_arriving_together_share_confirmations(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.version, fake.deny = 1, False
    ask = {"input": month_input(currency="TAGGED", metrics=["gmv"])}
    first = await gql(fake.client, tenant.headers, KPIS, **ask)
    fake.calls.clear()
    fake.confirm_delay = 0.3
    try:
        answers = await asyncio.gather(
            *(gql(fake.client, tenant.headers, KPIS, **ask) for _ in range(10))
        )
    finally:
        fake.confirm_delay = 0.0
    assert all(answer == first for answer in answers)
    # The first request's check, and one more for the nine that came while it ran.
    assert [call["headers"]["if-none-match"] for call in fake.calls] == ['"v1"', '"v1"']


def remembered(body: bytes) -> Remembered:
    return Remembered(calls=(), body=body)


async def settle() -> None:
    """Lets every task that is ready run until it waits."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_request_never_takes_a_check_begun_before_it_arrived() -> None:
    confirmations = Confirmations()
    verdicts = [remembered(b"before"), remembered(b"after")]
    released = [asyncio.Event(), asyncio.Event()]
    begun: list[int] = []

    async def check() -> Remembered | None:
        turn = len(begun)
        begun.append(turn)
        await released[turn].wait()
        return verdicts[turn]

    early = asyncio.create_task(confirmations.confirm(b"k", check))
    await settle()
    late = [asyncio.create_task(confirmations.confirm(b"k", check)) for _ in range(5)]
    await settle()
    assert begun == [0]
    released[0].set()
    assert await early == verdicts[0]
    await settle()
    assert begun == [0, 1] and not any(task.done() for task in late)
    released[1].set()
    assert [await task for task in late] == [verdicts[1]] * 5
    assert confirmations.checks == 2
    # Nothing running: the next request starts a check of its own.
    released[0].clear()
    begun.clear()
    again = asyncio.create_task(confirmations.confirm(b"k", check))
    await settle()
    assert begun == [0]
    released[0].set()
    assert await again == verdicts[0]


async def test_a_failed_check_confirms_nothing_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    confirmations = Confirmations()

    async def broken() -> Remembered | None:
        raise RuntimeError("metrics unreachable")

    with caplog.at_level(logging.ERROR):
        assert await confirmations.confirm(b"k", broken) is None
    assert "confirming a remembered answer failed" in caplog.text

    async def fine() -> Remembered | None:
        return remembered(b"ok")

    assert await confirmations.confirm(b"k", fine) == remembered(b"ok")


async def test_a_waiter_that_goes_away_leaves_the_check_to_the_others() -> None:
    confirmations = Confirmations()
    release = asyncio.Event()

    async def slow() -> Remembered | None:
        await release.wait()
        return remembered(b"ok")

    gone = asyncio.create_task(confirmations.confirm(b"k", slow))
    staying = asyncio.create_task(confirmations.confirm(b"k", slow))
    await settle()
    gone.cancel()
    await settle()
    release.set()
    assert await staying == remembered(b"ok")
    assert gone.cancelled()


def test_memory_keeps_the_most_recently_used_answers() -> None:
    memory = AnswerMemory(capacity=2)
    answer = Remembered(calls=(), body=b"{}")
    memory.put(b"a", answer)
    memory.put(b"b", answer)
    assert memory.get(b"a") is answer
    memory.put(b"c", answer)
    assert memory.get(b"b") is None and memory.get(b"a") is answer


async def test_catalog_comes_from_metrics(fake: FakeMetrics, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    body = await gql(fake.client, tenant.headers, CATALOG)
    assert body["data"]["kpiCatalog"] == CATALOG_BODY["kpis"]


async def test_no_or_bad_token_is_401_unauthenticated(
    fake: FakeMetrics, stack: Stack, minter: TokenMinter
) -> None:
    gateway = stack.apps["gateway"].state
    expired = mint_access_token(
        gateway.signer,
        stack.gateway,
        "lodestar",
        -3600,
        subject="cl_gone",
        client_id="cl_gone",
        tenant_id="tn_gone",
        scope="kpi:read",
    )
    forged = minter.mint("tn_gone", ["kpi:read"], iss=stack.gateway)
    fake.calls.clear()
    for headers in (
        {},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
    ):
        wrong_input = {"input": {**month_input(), "from": "2026-2-01"}}
        for query, variables, ran in (
            (CATALOG, {}, True),
            (KPIS, {"input": month_input()}, True),
            # Whatever else is wrong with it: an input refused before anything runs,
            # a document that does not parse.
            (KPIS, wrong_input, False),
            ("{ kpiCatalog { id }", {}, False),
        ):
            response = await fake.client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            # CONTRACT §2, as on every REST route; the body stays a GraphQL answer.
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            body = response.json()
            # Refused as a whole (GraphQL spec §7.1.2): no data, whether a field ran or not,
            # and so no error names a field's path.
            assert "data" not in body, (ran, body)
            assert all("path" not in error for error in body["errors"]), (ran, body)
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # A query sent by GET is executed too, and refused the same way.
        response = await fake.client.get("/graphql", params={"query": CATALOG}, headers=headers)
        assert response.status_code == 401, response.text
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # A body GraphQL cannot read is answered after the token, not before it.
        for content, content_type in ((b"{bad", "application/json"), (b"{}", "text/plain")):
            response = await fake.client.post(
                "/graphql", content=content, headers={**headers, "Content-Type": content_type}
            )
            assert response.status_code == 401, response.text
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            # With the same extensions as any other 401 of GraphQL's.
            extensions = response.json()["errors"][0]["extensions"]
            assert extensions == {"code": "UNAUTHENTICATED", "error": "invalid_token"}
    assert fake.calls == []
    # GraphiQL, and the schema it introspects, need no token.
    page = await fake.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    schema = await gql(fake.client, {}, "{ __schema { queryType { name } } }")
    assert schema["data"]["__schema"]["queryType"]["name"] == "Query"
    # A schema question GraphQL refuses is answered without a token too.
    wrong = await fake.client.post("/graphql", json={"query": "{ __type { name } }"})
    assert wrong.status_code == 200 and wrong.json()["errors"][0]["extensions"]["code"] == (
        "BAD_USER_INPUT"
    )


async def test_missing_scope_is_forbidden_naming_it(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    fake.calls.clear()
    # A document that would not run (a lower-case grain, a syntax error, an unknown
    # field, a variable of the wrong type) is refused for the scope first, too.
    for query, variables in (
        (CATALOG, {}),
        (KPIS, {"input": month_input()}),
        (KPIS, {"input": month_input(grain="month")}),
        ("{ kpis(input: {", {}),
        ("{ kpiCatalog { nosuchfield } }", {}),
        (KPIS, {"input": month_input(**{"from": 5})}),
    ):
        answer = await fake.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=tenant.headers
        )
        assert answer.status_code == 403, answer.text
        assert answer.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="kpi:read"'
        )
        [error] = answer.json()["errors"]
        assert error["extensions"] == {
            "code": "FORBIDDEN",
            "error": "insufficient_scope",
            "scope": "kpi:read",
        }
        assert "kpi:read" in error["message"]
    # So is a request GraphQL cannot read at all: which fields it asks cannot be told.
    two = "query A { kpiCatalog { id } } query B { kpiCatalog { id } }"
    for content, content_type in (
        (orjson.dumps({"query": two}), "application/json"),
        (orjson.dumps({"query": CATALOG, "operationName": "Nope"}), "application/json"),
        (orjson.dumps([{"query": CATALOG}]), "application/json"),
        (b"{", "application/json"),
        (CATALOG.encode(), "text/plain"),
    ):
        answer = await fake.client.post(
            "/graphql", content=content, headers={**tenant.headers, "Content-Type": content_type}
        )
        assert answer.status_code == 403, (content, answer.text)
        assert answer.json()["errors"][0]["extensions"]["scope"] == "kpi:read"
    assert fake.calls == []


async def test_another_tenants_id_is_forbidden(
    fake: FakeMetrics, new_tenant: NewTenant, admin_token: str
) -> None:
    seller = await new_tenant(scopes=["kpi:read"])
    other = await new_tenant(scopes=["kpi:read"])
    fake.calls.clear()
    body = await gql(
        fake.client, seller.headers, KPIS, input=month_input(), tenantId=other.tenant_id
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert other.tenant_id in body["errors"][0]["message"]
    # The platform admin acts for no tenant: it cannot read a seller's KPIs either.
    admin = {"Authorization": f"Bearer {admin_token}"}
    body = await gql(fake.client, admin, KPIS, input=month_input(), tenantId=seller.tenant_id)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert fake.calls == []


@pytest.mark.parametrize(
    ("currency", "code"),
    [
        ("XXX", "BAD_USER_INPUT"),
        ("DENY", "FORBIDDEN"),
        ("GONE", "NOT_FOUND"),
        ("BOOM", "INTERNAL"),
        ("BUSY", "INTERNAL"),
        # Each kpis field counts at metrics: a dashboard of many widgets slows down,
        # told when to ask again, rather than meeting a fault of the server.
        ("FAST", "RATE_LIMITED"),
    ],
)
async def test_metrics_errors_become_graphql_codes(
    fake: FakeMetrics, new_tenant: NewTenant, currency: str, code: str
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    response = await fake.client.post(
        "/graphql",
        json={"query": KPIS, "variables": {"input": month_input(currency=currency)}},
        headers=tenant.headers,
    )
    # Nothing answered for asking too fast is a 429 with Retry-After, as the gateway's
    # own limit answers; every other refusal here is an answer, 200.
    assert response.status_code == (429 if currency == "FAST" else 200), response.text
    assert response.headers.get("retry-after") == ("3" if currency == "FAST" else None)
    body = response.json()
    [error] = body["errors"]
    assert body["data"] is None
    assert error["extensions"]["code"] == code
    assert "Traceback" not in str(body) and "password" not in str(body)
    # Only a metrics away for now is worth asking again in a moment.
    assert error["extensions"].get("retryAfter") == {"BUSY": 1, "FAST": 3}.get(currency)
    if code == "BAD_USER_INPUT":
        assert error["message"] == "unknown currency XXX"
        # Named as the GraphQL client wrote it, not as metrics' REST parameter.
        assert error["extensions"]["errors"] == [
            {"field": "input.currency", "reason": "unknown currency"}
        ]


async def test_a_fault_of_ours_is_internal_naming_its_trace(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a REST 500 names its trace_id: the way to the log of what failed."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault of ours")

    monkeypatch.setattr(graphql_kpis, "_get_metrics", broken)
    tenant = await new_tenant(scopes=["kpi:read"])
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**tenant.headers, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    body = await gql(http, headers, CATALOG)
    assert body["errors"][0]["message"] == "internal error"
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL", "traceId": trace}
    assert "fault of ours" not in str(body)


async def test_metrics_down_is_internal_without_details(
    stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    with refusing_port() as down:
        async with own_gateway(stack, metrics_url=f"http://127.0.0.1:{down}") as client:
            body = await gql(client, tenant.headers, CATALOG)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert body["errors"][0]["message"] == "the metrics service is unavailable"
    # As REST's Retry-After: the answer's one HTTP status speaks for every field.
    assert body["errors"][0]["extensions"]["retryAfter"] == 1


async def test_input_errors_are_bad_user_input(fake: FakeMetrics, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.calls.clear()
    too_many = await gql(
        fake.client,
        tenant.headers,
        KPIS,
        input=month_input(metrics=[f"m{i}" for i in range(51)]),
    )
    error = too_many["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"] == [
        {"field": "input.metrics", "reason": "at most 50 items"}
    ]
    too_wide = await gql(
        fake.client, tenant.headers, KPIS, input=month_input(filters={"stores": ["店" * 171]})
    )
    assert too_wide["errors"][0]["extensions"]["errors"] == [
        {
            "field": "input.filters.stores",
            "reason": "each at most 256 characters and 512 bytes of UTF-8",
        }
    ]
    wrong_enum = await gql(fake.client, tenant.headers, KPIS, input=month_input(grain="HOUR"))
    assert wrong_enum["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_date = await gql(fake.client, tenant.headers, KPIS, input=month_input(to="2026-02-30"))
    assert bad_date["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Dates as the contract writes them, not whatever Python's fromisoformat reads.
    for lax in ("20260105", "2026-W02-1", "2026-01-05T00:00:00"):
        refused = await gql(fake.client, tenant.headers, KPIS, input=month_input(to=lax))
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", lax
        assert "2026-01-31" in refused["errors"][0]["message"]
    inline = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "20260101", to: "2026-01-31", grain: TOTAL})'
        " { currency } }",
    )
    assert inline["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert fake.calls == []


async def test_input_errors_name_the_field(
    fake: FakeMetrics, http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """graphql-core names a type ("Value cannot represent a Date"); a client needs the
    field, whether it wrote the value in the query or in a variable."""
    tenant = await new_tenant(scopes=["kpi:read"])
    inline = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "20260101", to: "2026-01-31", grain: HOUR,'
        ' filters: {skus: ["A", 1]}}, tenantId: 1.5) { currency } }',
    )
    named = {e["extensions"]["errors"][0]["field"]: e for e in inline["errors"]}
    assert set(named) == {"input.from", "input.grain", "input.filters.skus[1]", "tenantId"}
    for name, error in named.items():
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"].startswith(f"{name}: "), error
    # Each located at the value written, a Date that is none too (its scalar's own
    # error comes without one), so an editor can underline it.
    assert named["input.from"]["locations"] == [{"line": 1, "column": 40}]
    assert named["input.filters.skus[1]"]["locations"] == [{"line": 1, "column": 105}]
    # A list or an object where a String belongs too (graphql-core blames a copy of it).
    nested = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "2026-01-01", to: "2026-01-31", grain: MONTH,'
        ' filters: {skus: [["x"]], stores: {a: 1}}}) { currency } }',
    )
    assert {e["extensions"]["errors"][0]["field"]: e["locations"] for e in nested["errors"]} == {
        "input.filters.skus[0]": [{"line": 1, "column": 103}],
        "input.filters.stores": [{"line": 1, "column": 119}],
    }
    # A variable's default value is named by its variable.
    defaults = await gql(
        fake.client,
        tenant.headers,
        'query($d: Date = "nope", $i: KpiQueryInput = {metrics: ["gmv"], from: "x",'
        ' to: "2026-01-31", grain: MONTH}) { a: kpis(input: {metrics: ["gmv"], from: $d,'
        ' to: "2026-01-31", grain: MONTH}) { currency } b: kpis(input: $i) { currency } }',
    )
    assert [e["extensions"]["errors"][0]["field"] for e in defaults["errors"]] == ["d", "i.from"]
    assert defaults["errors"][0]["message"].startswith("d: Value cannot represent a Date")
    # A field or an argument written twice is named as written.
    twice = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "2026-01-01", to: "2026-01-31", grain: MONTH,'
        ' filters: {skus: ["A"], skus: ["B"]}}, input: {metrics: ["gmv"], from: "2026-01-01",'
        ' to: "2026-01-31", grain: MONTH}) { currency } }',
    )
    assert sorted(e["extensions"]["errors"][0]["field"] for e in twice["errors"]) == [
        "input",
        "input.filters.skus",
    ]
    # A value that is no string is shown as what it is, not as the text it should be.
    shown = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: 20260101, to: ["2026-01-31"], grain: MONTH})'
        " { currency } }",
    )
    assert [e["extensions"]["errors"][0]["reason"] for e in shown["errors"]] == [
        "Value cannot represent a Date: 20260101. Expected a string, a date such as 2026-01-31.",
        'Value cannot represent a Date: ["2026-01-31"]. Expected a string, a date such as'
        " 2026-01-31.",
    ]
    passed = await gql(
        fake.client, tenant.headers, KPIS, input=month_input(**{"from": 1.5, "to": {"y": 2026}})
    )
    assert [e["extensions"]["errors"][0] for e in passed["errors"]] == [
        {
            "field": "input.from",
            "reason": "Value cannot represent a Date: 1.5. Expected a string, a date such as"
            " 2026-01-31.",
        },
        {
            "field": "input.to",
            "reason": 'Value cannot represent a Date: {"y": 2026}. Expected a string, a date such'
            " as 2026-01-31.",
        },
    ]
    # A misspelt field is named itself, as a missing one is.
    misspelt = await gql(
        fake.client, tenant.headers, KPIS, input=month_input(filters={"store": ["Zeta"]})
    )
    [unknown] = misspelt["errors"]
    assert unknown["extensions"]["errors"][0]["field"] == "input.filters.store"
    missing = await gql(
        fake.client,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "2026-01-01"}) { currency } }',
    )
    # A required field left out is named itself, not the object it is missing from.
    assert sorted(e["extensions"]["errors"][0]["field"] for e in missing["errors"]) == [
        "input.grain",
        "input.to",
    ]
    without_to = {k: v for k, v in month_input().items() if k != "to"}
    unnamed = await gql(fake.client, tenant.headers, KPIS, input=without_to)
    assert [e["extensions"]["errors"][0]["field"] for e in unnamed["errors"]] == ["input.to"]
    assert unnamed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    variables = await gql(
        fake.client,
        tenant.headers,
        KPIS,
        input=month_input(to="2026-02-30", filters={"skus": [3]}),
    )
    assert [e["extensions"]["errors"] for e in variables["errors"]] == [
        [
            {
                "field": "input.to",
                "reason": 'Value cannot represent a Date: "2026-02-30". day is out of range for month',
            }
        ],
        [
            {
                "field": "input.filters.skus[0]",
                "reason": "String cannot represent a non string value: 3",
            }
        ],
    ]
    # A number beyond a double is JSON: the variable's field is named, not the body.
    for written in ("1e400", "9" * 5000, "3000000000"):
        document = orjson.dumps({"query": KPIS, "variables": {"input": month_input(limit=7)}})
        huge = document.replace(b'"limit":7', b'"limit":' + written.encode())
        answer = await fake.client.post("/graphql", content=huge, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        [refused] = answer.json()["errors"]
        assert refused["extensions"]["code"] == "BAD_USER_INPUT"
        assert refused["extensions"]["errors"] == [
            {"field": "input.limit", "reason": "is too large a number"}
        ], refused
        assert refused["message"] == "input.limit: is too large a number"
    # Metrics' own refusal of a field, named as the GraphQL client wrote it.
    none_asked = await gql(http, tenant.headers, KPIS, input=month_input(metrics=[]))
    [refusal] = none_asked["errors"]
    assert refusal["extensions"]["errors"][0]["field"] == "input.metrics"
    assert "input.metrics: required" in refusal["message"], refusal
    absent = await gql(fake.client, tenant.headers, KPIS, input=None)
    assert absent["errors"][0]["extensions"]["errors"][0]["field"] == "input"
    assert fake.calls == []


async def test_abusive_queries_are_refused(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    aliases = " ".join(f"a{i}: kpiCatalog {{ id }}" for i in range(40))
    body = await gql(http, tenant.headers, f"{{ {aliases} }}")
    assert body["errors"] and body.get("data") is None
    assert "aliases" in body["errors"][0]["message"].lower()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    deep = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
    body = await gql(http, tenant.headers, deep)
    assert body["errors"] and "depth" in body["errors"][0]["message"].lower()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Under the token cap, but dear to check: graphql-core compares every two fields
    # of one key in a selection (480 of them held the gateway a second), so a key is
    # asked for at most 20 times in one selection, fragments' fields included.
    wide = "{ " + " ".join(["__typename"] * 800) + " }"
    body = await gql(http, tenant.headers, wide)
    assert messages(body) == [
        "one selection asks for __typename 800 times, fragments and the fields of one name "
        "merged; at most 20 (fields of one name merge into one: ask once)"
    ]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    spread = " ".join(f"fragment F{i} on Query {{ kpiCatalog {{ id }} }}" for i in range(21))
    body = await gql(
        http, tenant.headers, spread + " { " + " ".join(f"...F{i}" for i in range(21)) + " }"
    )
    assert messages(body)[0].startswith("one selection asks for kpiCatalog 21 times")
    inline = "{ " + " ".join(["... on Query { kpiCatalog { id } }"] * 21) + " }"
    assert messages(await gql(http, tenant.headers, inline))[0].startswith(
        "one selection asks for kpiCatalog 21 times"
    )
    # Fields of one key merge, and so do their selections: twenty `types` asking for
    # `ofType` twenty times each ask for it 400 times in one, which costs as much.
    merged = "{ __schema { " + " ".join(["types { " + "ofType { name } " * 20 + "}"] * 20) + " } }"
    for headers in ({}, tenant.headers):
        body = await gql(http, headers, merged)
        assert messages(body)[0].startswith("one selection asks for ofType 400 times"), body
    # Twenty is answered; a fragment spread twice in one selection counts once.
    twenty = (
        "fragment F on Query { kpiCatalog { id } } { " + "kpiCatalog { id } " * 19 + "...F ...F }"
    )
    assert "errors" not in await gql(http, tenant.headers, twenty)
    # A document is at most 32 KiB (a 14 MB comment was parsed, and kept twice).
    commented = "#" + "a" * 40_000 + "\n{ __typename }"
    long = await http.post("/graphql", json={"query": commented}, headers=tenant.headers)
    assert long.status_code == 400, long.text
    assert messages(long.json()) == ["the query has 40,016 characters; at most 32,768"]
    # Without a token a document asking for data is refused before it is checked.
    anonymous = await http.post(
        "/graphql", json={"query": wide.replace("__typename", "kpiCatalog { id }")}
    )
    assert anonymous.status_code == 401 and messages(anonymous.json()) == ["missing bearer token"]
    huge = "{ " + " ".join(["kpiCatalog { id name unit direction description }"] * 400) + " }"
    body = await gql(http, tenant.headers, huge)
    assert body["errors"] and body.get("data") is None
    assert "token" in body["errors"][0]["message"].lower()


def messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors") or []]


def doubling_fragments(levels: int, leaf: str) -> str:
    """A document of a few hundred bytes whose fragment spreads double at each level:
    2**levels times ``leaf`` once spread out."""
    fragments = [f"fragment F0 on Query {{ {leaf} }}"] + [
        f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)
    ]
    return " ".join(fragments) + f" {{ ...F{levels} }}"


async def test_fragments_spread_again_and_again_are_measured_once(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The limits walked a fragment at each of its spreads: 20 doubling fragments held
    the gateway for 19 s, doubling with each more, before any token was read. At 30
    they would take hours; they are measured in one pass of the document."""
    tenant = await new_tenant(scopes=["kpi:read"])
    bomb = doubling_fragments(30, "__typename")
    answer = await http.post("/graphql", json={"query": bomb}, timeout=60)
    # Refused as a whole, for want of a token first, as every refusal.
    assert answer.status_code == 401, answer.text
    body = await gql(http, tenant.headers, bomb)
    # The operation's 2**30 fields, and each fragment's own (graphql-core checks every
    # fragment's definition, used or not): 2**31 - 1 more.
    assert messages(body) == [
        "the query spreads out to 3,221,225,471 fields once its fragments are written out; "
        "at most 2,000"
    ]
    # Unused, such fragments cost as much to check: counted. Fragments on data types
    # make a document more than a schema question: without a token, 401 at once.
    unused = bomb.replace("{ ...F30 }", "{ __typename }")
    body = await gql(http, tenant.headers, unused)
    assert messages(body)[0].startswith("the query spreads out to 2,147,483,648 fields")
    anonymous = await http.post("/graphql", json={"query": unused})
    assert anonymous.status_code == 401, anonymous.text
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Inside kpis too, where the answer's size is reckoned from the fields asked for.
    inside = (
        doubling_fragments(30, "currency")
        .replace("on Query", "on KpiResult")
        .replace("{ ...F30 }", "query Q($input: KpiQueryInput!) { kpis(input: $input) { ...F30 } }")
    )
    body = await gql(http, tenant.headers, inside, input=month_input())
    assert messages(body)[0].startswith("the query spreads out to 3,221,225,472 fields")
    # A document spreading out to fewer is answered, its fragments merged.
    small = doubling_fragments(9, "__typename")
    assert await gql(http, tenant.headers, small) == {"data": {"__typename": "Query"}}
    # Spreads still count: an alias spread 2**4 times is 16 aliases.
    body = await gql(http, tenant.headers, doubling_fragments(4, "a: __typename"))
    assert body["errors"][0]["message"] == "16 aliases found. Allowed: 15"
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Depth is counted through fragments as if written out (the schema's own fields
    # are not so deep: made-up ones are refused for themselves too).
    deep = (
        "fragment Lower on Deep { f { g { h { i } } } } "
        "fragment Upper on Query { a { b { c { d { ...Lower } } } } } "
        "query Deep { ...Upper }"
    )
    # Eight levels, then nine.
    body = await gql(http, tenant.headers, deep.replace("{ i }", "{ i { j } }"))
    assert "'Deep' exceeds maximum operation depth of 8" not in messages(body)
    body = await gql(http, tenant.headers, deep.replace("{ i }", "{ i { j { k } } }"))
    assert "'Deep' exceeds maximum operation depth of 8" in messages(body)
    # A fragment that does not exist is named as graphql-core names it, with a code.
    for unknown in ("{ ...Nope }", "{ kpiCatalog { ...Nope } }"):
        body = await gql(http, tenant.headers, unknown)
        assert body["errors"][0]["message"] == "Unknown fragment 'Nope'.", body
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_request_refused_before_it_runs_has_no_data(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """GraphQL spec §7.1.2: an error before execution leaves no ``data`` entry; one in
    execution that nulls the non-null root leaves ``data: null``."""
    tenant = await new_tenant(scopes=["kpi:read"])
    other = await new_tenant(scopes=["kpi:read"])
    fake.calls.clear()
    for query, variables in (
        ("{ kpiCatalog { id }", {}),  # does not parse
        ("{ kpiCatalog { nope } }", {}),  # does not validate
        (KPIS, {"input": month_input(grain="HOUR")}),  # a variable that does not coerce
        (KPIS, {}),  # a required variable missing
    ):
        response = await fake.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=tenant.headers
        )
        body = response.json()
        assert "data" not in body, (query, body)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert fake.calls == []
    ran = await gql(
        fake.client, tenant.headers, KPIS, input=month_input(), tenantId=other.tenant_id
    )
    assert "data" in ran and ran["data"] is None
    assert ran["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Without a token, a document refused before it ran is refused for that first,
    # and still has no data.
    response = await fake.client.post("/graphql", json={"query": "{ kpiCatalog { nope } }"})
    assert response.status_code == 401
    assert "data" not in response.json()


async def test_several_operations_need_an_operation_name(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    document = "query A { a: kpiCatalog { id } } query B { b: __typename }"
    fake.calls.clear()
    unnamed = await fake.client.post("/graphql", json={"query": document}, headers=tenant.headers)
    unknown = await fake.client.post(
        "/graphql", json={"query": document, "operationName": "C"}, headers=tenant.headers
    )
    # Refused as the view refuses an unknown operation: 400, BAD_USER_INPUT.
    for refused in (unnamed, unknown):
        assert refused.status_code == 400, refused.text
        [error] = refused.json()["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert unnamed.json()["errors"][0]["message"] == (
        "Must provide operation name if query contains multiple operations."
    )
    by_get = await fake.client.get("/graphql", params={"query": document}, headers=tenant.headers)
    assert by_get.status_code == 400
    assert fake.calls == []
    named = await fake.client.post(
        "/graphql", json={"query": document, "operationName": "B"}, headers=tenant.headers
    )
    assert named.status_code == 200 and named.json() == {"data": {"b": "Query"}}
    # A name that is no string is told so, not shown as Python writes a list.
    for written in (["A"], 5):
        odd = await fake.client.post(
            "/graphql", json={"query": document, "operationName": written}, headers=tenant.headers
        )
        assert odd.status_code == 400, odd.text
        assert odd.json()["errors"][0]["message"] == "operationName must be a string or null"
    # One operation needs no name, anonymous or not.
    for single in ("query A { a: __typename }", "{ a: __typename }"):
        body = await gql(fake.client, tenant.headers, single)
        assert body == {"data": {"a": "Query"}}


async def test_graphiql_is_served_on_get(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    # A media type is read in any case.
    shouted = await http.get("/graphql", headers={"Accept": "TEXT/HTML"})
    assert shouted.status_code == 200 and "graphiql" in shouted.text.lower()
    # The same URL answers JSON to another Accept: a cache must not mix them up.
    answer = await http.get("/graphql", headers={"Accept": "application/json"})
    assert answer.headers["content-type"].startswith("application/json")
    for sent in (response, answer):
        assert sorted(v.strip() for v in sent.headers["vary"].split(",")) == [
            "Accept",
            "Accept-Encoding",
        ]


async def test_a_body_graphql_cannot_read_is_400_or_415(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    for content, content_type, status in (
        (b"{bad", "application/json", 400),
        (b'{"query": "{ kpiCatalog { id } }"}', "text/plain", 415),
        (b'{"query": "{ kpiCatalog { id } }"}', "application/jsonx", 415),
        # JSON, but no object: a server error before, not the client's.
        *(
            (body, "application/json", 400)
            for body in (b"null", b'"x"', b"123", b"true", b"NaN", b"-Infinity", b"1e999")
        ),
        (b'"{\\"query\\": \\"{ kpiCatalog { id } }\\"}"', "application/json; charset=utf-8", 400),
    ):
        response = await fake.client.post(
            "/graphql", content=content, headers={**tenant.headers, "Content-Type": content_type}
        )
        assert response.status_code == status, (content, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        if status == 400 and content[:1] != b"{":
            assert "must be a JSON object" in response.json()["errors"][0]["message"]
        # Who may call is answered first.
        anonymous = await fake.client.post(
            "/graphql", content=content, headers={"Content-Type": content_type}
        )
        assert anonymous.status_code == 401, (content, anonymous.text)


async def test_a_body_without_a_type_or_as_structured_json_is_read_as_json(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """As every REST route reads it; and Accept on two lines is one list, as there."""
    tenant = await new_tenant(scopes=["kpi:read"])
    body = orjson.dumps({"query": CATALOG})
    for typed in (
        {},
        {"Content-Type": "application/graphql-response+json"},
        {"Content-Type": "Application/JSON; Charset=UTF-8"},
        {"Content-Type": ""},
    ):
        answer = await fake.client.post(
            "/graphql", content=body, headers={**tenant.headers, **typed}
        )
        assert answer.status_code == 200, (typed, answer.text)
        assert answer.json()["data"]["kpiCatalog"], answer.text
    page = await fake.client.get(
        "/graphql",
        headers=[
            *tenant.headers.items(),
            ("Accept", "application/json;q=0.5"),
            ("Accept", "text/html"),
        ],
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


async def test_a_get_graphql_cannot_take_is_refused_in_json(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """Over GET as over POST, a refused request is a GraphQL error body with its code;
    a mutation is never run by a GET (GraphQL over HTTP: 405, send it by POST)."""
    tenant = await new_tenant(scopes=["kpi:read"])
    headers = {**tenant.headers, "Accept": "application/json"}
    refusals: tuple[tuple[dict[str, str], int, str], ...] = (
        ({"query": "mutation { x }"}, 405, "mutations are not allowed when using GET"),
        ({"query": CATALOG, "variables": "notjson"}, 400, "variables or extensions"),
        ({"query": CATALOG, "operationName": "X"}, 400, 'Unknown operation named "X"'),
        ({}, 400, "No GraphQL query found"),
    )
    for params, status, words in refusals:
        response = await fake.client.get("/graphql", params=params, headers=headers)
        assert response.status_code == status, (params, response.text)
        assert response.headers["content-type"] == "application/json"
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT"}
        assert words in error["message"], error
    by_get = await fake.client.get("/graphql", params={"query": "mutation { x }"}, headers=headers)
    assert by_get.headers["allow"] == "POST"
    answered = await fake.client.get("/graphql", params={"query": CATALOG}, headers=headers)
    assert answered.status_code == 200 and answered.json()["data"]["kpiCatalog"]


async def test_the_fields_of_one_request_show_one_state_of_the_data(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """A push landed between a dashboard's card and the breakdown beside it: the card
    showed the data before it. The operation is run again until its fields agree."""
    tenant = await new_tenant(scopes=["kpi:read"])
    document = (
        "query($i: KpiQueryInput!) { card: kpis(input: $i) { warnings } "
        "chart: kpis(input: $i) { warnings } }"
    )
    variables = {"i": month_input(currency="LANDING")}
    fake.calls.clear()
    fake.landing = [7, 8, 8, 8]
    body = await gql(fake.client, tenant.headers, document, **variables)
    assert body["data"] == {
        "card": {"warnings": ["version 8"]},
        "chart": {"warnings": ["version 8"]},
    }
    assert len(fake.calls) == 4 and fake.landing == []
    # Pushes landing faster than it runs: after three runs, answered as it comes.
    fake.landing = [1, 2, 3, 4, 5, 6]
    body = await gql(fake.client, tenant.headers, document, **variables)
    assert body["data"] == {
        "card": {"warnings": ["version 5"]},
        "chart": {"warnings": ["version 6"]},
    }


async def test_input_errors_read_as_the_query_wrote_them(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A null is null, not Python's None; and metrics' refusal of a value reads as
    every other input error does, beginning with the field."""
    tenant = await new_tenant(scopes=["kpi:read"])
    written = await gql(
        http,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv", null], from: "2026-01-01", to: "2026-01-31",'
        " grain: TOTAL}) { currency } }",
    )
    [error] = written["errors"]
    assert error["message"] == (
        "input.metrics[1]: Expected value of non-null type 'String!' not to be null."
    )
    # So it is in a variable.
    variable = await gql(
        http,
        tenant.headers,
        "query($input: KpiQueryInput!) { kpis(input: $input) { currency } }",
        input=month_input(metrics=["gmv", None]),
    )
    [error] = variable["errors"]
    assert error["message"].endswith("not to be null."), error
    assert error["extensions"]["errors"][0]["reason"].endswith("not to be null."), error
    # The caller's own word None stays as written.
    word = await gql(
        http,
        tenant.headers,
        '{ kpis(input: {metrics: ["gmv"], from: "2026-01-01", to: "2026-01-31",'
        " grain: None}) { currency } }",
    )
    assert "None" in word["errors"][0]["message"], word
    empty = await gql(
        http,
        tenant.headers,
        "query($input: KpiQueryInput!) { kpis(input: $input) { currency } }",
        input=month_input(metrics=[]),
    )
    [error] = empty["errors"]
    assert error["message"] == "input.metrics: required", error
    assert error["extensions"]["errors"] == [{"field": "input.metrics", "reason": "required"}]


async def test_the_schema_documents_itself_for_graphiql(http: httpx.AsyncClient) -> None:
    """A dashboard developer reads the schema in GraphiQL: what from, to and currency
    mean, what previous and change are, with no directive nobody can use."""
    query = """{
      __schema { directives { name } }
      input: __type(name: "KpiQueryInput") { description inputFields { name description } }
      value: __type(name: "MetricValue") { fields { name description } }
    }"""
    answer = (await http.post("/graphql", json={"query": query})).json()["data"]
    assert "hasScope" not in {d["name"] for d in answer["__schema"]["directives"]}
    inputs = {f["name"]: f["description"] for f in answer["input"]["inputFields"]}
    assert inputs["from"] == "The first local date, inclusive"
    assert "reporting currency" in inputs["currency"]
    values = {f["name"]: f["description"] for f in answer["value"]["fields"]}
    assert values["change"].startswith("(value - previous) / |previous|")


async def test_a_long_currency_is_told_it_is_no_currency(
    fake: FakeMetrics, new_tenant: NewTenant
) -> None:
    """As metrics tells any other currency that is none; "each" was for lists."""
    tenant = await new_tenant(scopes=["kpi:read"])
    fake.calls.clear()
    body = await gql(fake.client, tenant.headers, KPIS, input=month_input(currency="X" * 65))
    [error] = body["errors"]
    assert error["extensions"]["errors"] == [
        {"field": "input.currency", "reason": "must be an ISO 4217 currency code such as USD"}
    ]
    assert fake.calls == []


def test_the_schema_gives_no_default_the_contract_does_not() -> None:
    """CONTRACT §5's SDL gives no argument or input field a default: a schema check
    of a frontend's CI against it would report each `= null` as a change."""
    printed = str(schema)
    assert "kpis(input: KpiQueryInput!, tenantId: ID): KpiResult!" in printed
    assert "kpiCatalog(tenantId: ID): [KpiDefinition!]!" in printed
    defaults = [line.strip() for line in printed.splitlines() if " = " in line]
    # Only the README's extension, the direction of an order, has one.
    assert defaults == ["direction: SortDirection! = DESC"]


async def test_a_document_is_refused_before_it_is_checked_when_it_cannot_be_asked(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Checking a document costs the gateway: a fragment of data fields, used or not,
    makes it more than a schema question (401 without a token, at once), and a list
    variable longer than any input takes is refused before it is converted for each
    field that uses it (340,000 strings in 75 filters held the event loop 6 s)."""
    tenant = await new_tenant(scopes=["kpi:read"])
    hidden = "{ __typename } fragment X on Query { kpiCatalog { id } }"
    answer = await http.post("/graphql", json={"query": hidden})
    assert answer.status_code == 401 and messages(answer.json()) == ["missing bearer token"]
    # Fragments on the schema's own types keep a schema question one.
    schema_only = "{ __schema { types { ...T } } } fragment T on __Type { name }"
    assert (await http.post("/graphql", json={"query": schema_only})).status_code == 200
    listed = 'query($s: [String!]) { kpis(input: {metrics: ["gmv"], from: "2026-01-01", to: "2026-01-02", grain: DAY, filters: {skus: $s}}) { currency } }'
    answer = await http.post(
        "/graphql",
        json={"query": listed, "variables": {"s": ["x"] * 1001}},
        headers=tenant.headers,
    )
    assert answer.status_code == 400, answer.text
    assert messages(answer.json()) == ["variables.s: at most 1,000 items in a list variable"]
    nested = {"i": {"filters": {"skus": ["a"] * 5, "stores": [""] * 2000}}}
    answer = await http.post(
        "/graphql", json={"query": listed, "variables": nested}, headers=tenant.headers
    )
    assert messages(answer.json()) == [
        "variables.i.filters.stores: at most 1,000 items in a list variable"
    ]
