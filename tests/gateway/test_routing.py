"""Routing `/v1/*` to the owning service, the merged OpenAPI document, health."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import create_model

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.gateway.proxy.service import OpenApiMerger
from shared.db import Database
from shared.events import EVENT_TYPES
from shared.service import READY_CHECK_SECONDS
from tests.conftest import NewTenant, Stack, serve_app
from tests.gateway.support import fake_service, own_gateway
from tests.unreachable import refusing_port


async def test_calls_reach_the_owning_service_unchanged_and_back(
    stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    seen: list[dict[str, object]] = []
    fake = FastAPI()

    @fake.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(request: Request, path: str) -> Response:
        seen.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "body": await request.body(),
                "headers": dict(request.headers),
            }
        )
        return Response(
            b'{"id":"p1"}',
            status_code=201,
            headers={"Location": "/v1/targets/plans/p1", "Content-Type": "application/json"},
        )

    async with (
        fake_service(fake) as url,
        own_gateway(stack, targets_url=url, ingest_url=url, metrics_url=url) as client,
    ):
        response = await client.post(
            "/v1/targets/plans?year=2026&tag=a%2Cb",
            content=b'{"name": "FY26"}',
            headers={
                **tenant.headers,
                "Content-Type": "application/json",
                "Idempotency-Key": "k-1",
                "Cookie": "session=secret",
            },
        )
        for path in ("/v1/events:csv?type=order_line", "/v1/kpis/catalog", "/v1/fx/rates"):
            assert (await client.put(path, headers=tenant.headers)).status_code == 201
    assert response.status_code == 201
    assert response.json() == {"id": "p1"}
    assert response.headers["location"] == "/v1/targets/plans/p1"
    call = seen[0]
    assert call["method"] == "POST"
    assert call["path"] == "/v1/targets/plans"
    assert call["query"] == "year=2026&tag=a%2Cb"
    assert call["body"] == b'{"name": "FY26"}'
    headers = call["headers"]
    assert isinstance(headers, dict)
    assert headers["authorization"] == tenant.headers["Authorization"]
    assert headers["idempotency-key"] == "k-1"
    assert headers["content-type"] == "application/json"
    assert "traceparent" in headers
    # Only what the service needs crosses: never the caller's cookies.
    assert "cookie" not in headers
    assert [c["path"] for c in seen[1:]] == ["/v1/events:csv", "/v1/kpis/catalog", "/v1/fx/rates"]


async def test_real_service_answers_pass_through(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["targets:read"])
    plans = await http.get("/v1/targets/plans", headers=tenant.headers)
    assert plans.status_code == 200
    assert plans.headers["content-type"].startswith("application/json")
    refused = await http.get(
        "/v1/targets/plans", headers=(await new_tenant(scopes=["kpi:read"])).headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert 'scope="targets:read"' in refused.headers["www-authenticate"]


async def test_unknown_v1_route_is_404(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    response = await http.get("/v1/nothing-here", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_dot_segments_never_reach_a_service(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Forwarded, ``..`` would be resolved on the way and reach a service's own routes
    (``/internal/consumer`` answers anyone that can reach metrics)."""
    for target in (
        "/v1/kpis/../../internal/consumer",
        "/v1/kpis/%2e%2e/%2e%2e/internal/consumer",
        "/v1/events/./../../internal/consumer",
    ):
        # As sent: httpx would resolve the dot segments itself.
        response = await http.get("/", extensions={"target": target.encode()})
        assert response.status_code == 404, target
        assert response.json()["error"] == "not_found", target
    # Slashes sent encoded are no segments: one segment ("a/../b" may be a store's id)
    # goes to the service as sent, where it names no route either.
    tenant = await new_tenant()
    target = "/v1/kpis/..%2F..%2Finternal%2Fconsumer"
    response = await http.get("/", headers=tenant.headers, extensions={"target": target.encode()})
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


async def test_a_slash_too_many_is_404_never_a_redirect_to_a_service(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A service's redirect would name its own port, which clients must not be sent to."""
    tenant = await new_tenant()
    for method, path in (
        ("POST", "/v1/events/"),
        ("GET", "/v1/kpis/"),
        ("GET", "/v1/kpis/catalog/"),
        ("GET", "/v1/targets/plans/"),
        ("GET", "/v1/tenants/"),
    ):
        response = await http.request(method, path, headers=tenant.headers, json={})
        assert (response.status_code, "location" in response.headers) == (404, False), path
        assert response.json()["error"] == "not_found", path


async def test_wrong_method_is_405_naming_the_allowed_ones(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    refused = {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    # The gateway's own routes, which the catch-all of /v1/* used to answer 404.
    for method, path, allowed in (
        ("PUT", "/v1/grants", "GET, HEAD, POST"),
        ("DELETE", "/v1/tenants", "GET, HEAD, POST"),
        ("PUT", "/v1/grants/gr_x", "GET, HEAD, PATCH, DELETE"),
        ("PUT", f"/v1/tenants/{tenant.tenant_id}/clients", "GET, HEAD, POST"),
        ("PUT", "/graphql", "GET, HEAD, POST"),
    ):
        response = await http.request(method, path, headers=tenant.headers)
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["allow"] == allowed, (method, path)
        assert response.json() == refused
    # A service's 405 reaches the caller with its Allow header, naming every method
    # of the path (GET and PUT are two routes of metrics).
    for path, allowed in (("/v1/kpis", "GET, HEAD"), ("/v1/settings/kpi", "GET, HEAD, PUT")):
        async with httpx.AsyncClient(base_url=stack.url("metrics")) as metrics:
            direct = await metrics.delete(path, headers=tenant.headers)
        response = await http.delete(path, headers=tenant.headers)
        assert response.status_code == direct.status_code == 405, path
        assert response.headers["allow"] == direct.headers["allow"] == allowed
        assert response.json() == direct.json() == refused
    # Methods the gateway forwards none of name the service route's too, not the five
    # the gateway forwards.
    for method, path, allowed in (
        ("OPTIONS", "/v1/kpis", "GET, HEAD"),
        ("TRACE", "/v1/events", "POST"),
        ("CONNECT", "/v1/kpis/catalog", "GET, HEAD"),
    ):
        response = await http.request(method, path, headers=tenant.headers)
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["allow"] == allowed, (method, path)


async def test_head_is_get_without_its_body(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    """RFC 9110: HEAD wherever GET; a poller checks an answer's ETag without its body."""
    tenant = await new_tenant(scopes=["kpi:read"])
    params = {"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-31", "grain": "total"}
    got = await http.get("/v1/kpis", params=params, headers=tenant.headers)
    head = await http.head("/v1/kpis", params=params, headers=tenant.headers)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == str(len(got.content))
    refused = await http.head("/v1/kpis", params=params)
    assert refused.status_code == 401 and refused.content == b""
    assert (await http.head("/healthz")).status_code == 200


async def test_a_body_that_is_no_json_is_named_body_by_every_service(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    headers = {**tenant.headers, "Content-Type": "application/json"}
    # The gateway's own route, then metrics' and ingest's through it.
    for method, path in (
        ("POST", "/v1/grants"),
        ("PUT", "/v1/settings/kpi"),
        ("POST", "/v1/events"),
    ):
        response = await http.request(method, path, content=b'{"x": ', headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json() == {
            "error": "invalid_input",
            "detail": "the body is not valid JSON",
            "errors": [{"field": "body", "reason": "invalid JSON"}],
        }, path


async def test_who_may_call_is_answered_before_what_was_sent(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """FastAPI reads a body before it checks the token: a caller without one, or
    without the scope, learns that first, not what is wrong with its body."""
    reader = await new_tenant(scopes=["kpi:read"])
    admin = await new_tenant(scopes=["tenant:admin"])
    json_type = {"Content-Type": "application/json"}
    for method, path in (
        ("POST", "/v1/grants"),
        ("PUT", "/v1/settings/kpi"),
        ("POST", "/v1/tenants"),
    ):
        anonymous = await http.request(method, path, content=b'{"x": ', headers=json_type)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        lacking = await http.request(
            method, path, content=b'{"x": ', headers={**reader.headers, **json_type}
        )
        assert lacking.status_code == 403, (path, lacking.text)
        assert lacking.json()["error"] == "insufficient_scope"
        as_text = {**reader.headers, "Content-Type": "text/plain"}
        assert (await http.request(method, path, content=b"{}", headers=as_text)).status_code == 403
    # Routes that take the platform admin or the tenant's own admin check that first too.
    for caller, tenant_id in ((reader, admin.tenant_id), (admin, reader.tenant_id)):
        clients = await http.post(
            f"/v1/tenants/{tenant_id}/clients",
            content=b"{bad",
            headers={**caller.headers, **json_type},
        )
        assert clients.status_code == 403, clients.text
    # The tenant named is checked too: the scope alone is not the right to call.
    other = await new_tenant(scopes=["kpi:read"])
    elsewhere = await http.put(
        "/v1/settings/kpi",
        params={"tenant_id": other.tenant_id},
        content=b'{"x": ',
        headers={**admin.headers, **json_type},
    )
    assert elsewhere.status_code == 403, elsewhere.text
    assert other.tenant_id in elsewhere.json()["detail"]
    # With the right to call, a JSON body sent as another type is named as such.
    for method, path in (("POST", "/v1/grants"), ("PUT", "/v1/settings/kpi")):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await http.request(
                method,
                path,
                content=b'{"gmv_includes_tax": true}',
                headers={**admin.headers, "Content-Type": content_type},
            )
            assert response.status_code == 415, (path, response.text)
            assert response.json() == {
                "error": "unsupported_media_type",
                "detail": f"the body must be sent as application/json, not {content_type}",
                "errors": [{"field": "header.Content-Type", "reason": "must be application/json"}],
            }
    # Sent with no type at all, it is read as JSON, on every route as on the events'.
    untyped = await http.put(
        "/v1/settings/kpi", content=b'{"gmv_includes_tax": true}', headers=admin.headers
    )
    assert untyped.status_code == 200, untyped.text
    assert untyped.json()["gmv_includes_tax"] is True
    untyped = await http.post("/v1/grants", content=b'{"stores": []}', headers=admin.headers)
    assert untyped.status_code == 422, untyped.text
    assert "agency_tenant_id" in {error["field"] for error in untyped.json()["errors"]}


async def test_downstream_down_is_503_naming_it(stack: Stack, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    with refusing_port() as down:
        async with own_gateway(stack, targets_url=f"http://127.0.0.1:{down}") as client:
            response = await client.get("/v1/targets/plans", headers=tenant.headers)
            document = await client.get("/openapi.json")
            # Without a good token it is told so first, as the service would have.
            anonymous = await client.get("/v1/targets/plans")
            forged = await client.get(
                "/v1/targets/plans", headers={"Authorization": "Bearer not-a-token"}
            )
            asked = await client.request("TRACE", "/v1/targets/plans")
    assert anonymous.status_code == 401 and forged.status_code == 401, anonymous.text
    assert asked.status_code == 401, asked.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert response.status_code == 503
    assert response.json() == {
        "error": "unavailable",
        "detail": "the targets service is unavailable",
    }
    # Away for now: a client may send it again in a moment.
    assert response.headers["retry-after"] == "1"
    # Never a document without its routes: a client generated from it would lack them.
    assert document.status_code == 503 and document.headers["retry-after"] == "1"
    assert document.json() == {
        "error": "unavailable",
        "detail": "the API document lacks the routes of targets, which is unavailable",
    }


async def test_a_service_restarting_keeps_its_routes_in_the_api_document(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(OpenApiMerger, "TTL_SECONDS", 0.0)
    targets = FastAPI()

    @targets.get("/v1/targets/plans")
    async def plans() -> dict[str, Any]:
        return {}

    port = free_port()
    async with own_gateway(stack, targets_url=f"http://127.0.0.1:{port}") as client:
        async with serve_app(targets, "127.0.0.1", port):
            whole = await client.get("/openapi.json")
        assert whole.status_code == 200 and "/v1/targets/plans" in whole.json()["paths"]
        # Targets stopped: its last document stands in for it.
        meanwhile = await client.get("/openapi.json")
    assert meanwhile.status_code == 200
    assert meanwhile.json() == whole.json()


async def test_a_pushed_event_is_documented_as_one_of_the_eleven_types(
    http: httpx.AsyncClient,
) -> None:
    """ERPs generate clients from the document: each type's payload is a schema of its
    own, told apart by ``type``, amounts as decimal strings."""
    document = (await http.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    items = body["schema"]["properties"]["events"]["items"]
    mapping = items["discriminator"]["mapping"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(mapping) == set(EVENT_TYPES)

    def resolved(ref: str) -> dict[str, Any]:
        found: dict[str, Any] = schemas[ref.removeprefix("#/components/schemas/")]
        return found

    line = resolved(mapping["order_line"])
    assert line["properties"]["type"]["const"] == "order_line"
    payload = resolved(line["properties"]["payload"]["$ref"])
    assert payload["additionalProperties"] is False
    assert {"order_id", "sku", "quantity", "unit_price", "purchased_at"} <= set(payload["required"])
    money = resolved(payload["properties"]["unit_price"]["$ref"])
    assert money["properties"]["amount"]["type"] == "string"
    assert money["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"


async def test_the_csv_upload_documents_its_types_and_a_chunked_bodys_411(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    upload = document["paths"]["/v1/events:csv"]["post"]
    (kind,) = [p for p in upload["parameters"] if p["name"] == "type"]
    assert kind["required"] and set(kind["schema"]["enum"]) == set(EVENT_TYPES)
    for path, method in (("/v1/events:csv", "post"), ("/v1/events", "post")):
        assert "411" in document["paths"][path][method]["responses"], path
    assert "411" not in document["paths"]["/v1/kpis"]["get"]["responses"]


async def test_merged_openapi_is_a_valid_openapi_document(http: httpx.AsyncClient) -> None:
    # ERPs generate their clients from it, and generators refuse an invalid document
    # (a response header without a schema, say) outright.
    document = (await http.get("/openapi.json")).json()
    problems = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert problems == []
    # Valid, but a generator skips an answer whose body has no schema.
    unshaped = [
        (method, path, status, media_type)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        for media_type, content in answer.get("content", {}).items()
        if not content.get("schema")
    ]
    assert unshaped == []
    # What answers carry is declared, so that generated clients can read it.
    paths = document["paths"]
    assert "ETag" in paths["/v1/kpis"]["get"]["responses"]["200"]["headers"]
    assert "ETag" in paths["/v1/exports/{export_id}/archive"]["get"]["responses"]["200"]["headers"]
    for status in ("429", "503"):
        assert "Retry-After" in paths["/v1/kpis"]["get"]["responses"][status]["headers"]
    for path, method in (
        ("/graphql", "post"),
        ("/oauth/token", "post"),
        ("/oauth/authorize", "post"),
        ("/.well-known/jwks.json", "get"),
    ):
        assert "Retry-After" in paths[path][method]["responses"]["429"]["headers"], path
    # Any store id may take a time zone before its first event: 404 only for a dot segment.
    unreachable = paths["/v1/settings/stores/{store_id}"]["put"]["responses"]["404"]
    assert "`.` or `..`" in unreachable["description"]
    events = paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert events["schema"]["properties"]["events"]["minItems"] == 1
    # Bounds are JSON Schema's minimum and maximum, which generators read; FastAPI's
    # ge and le, written as given after a validator, are no keyword of it.
    bounds = {
        (path, method, parameter["name"]): sorted(parameter["schema"])
        for path, operations in paths.items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if {"ge", "le", "gt", "lt"} & set(parameter.get("schema", {}))
    }
    assert bounds == {}
    limit = next(p for p in paths["/v1/tenants"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    # An export takes no body but {}, and a body sent as another type is 415.
    export = paths["/v1/exports"]["post"]
    assert export["requestBody"]["required"] is False
    assert {"413", "415"} <= set(export["responses"])


async def test_merged_openapi_has_every_services_v1_routes(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = set(document["paths"])
    assert {
        "/v1/tenants",
        "/v1/tenants/{tenant_id}/clients",
        "/v1/events",
        "/v1/kpis",
        "/v1/kpis/catalog",
        "/v1/targets/plans",
        "/oauth/token",
    } <= paths
    assert "x-lodestar-unavailable" not in document
    assert "/healthz" not in paths
    refs = _refs(document["paths"])
    assert refs <= set(document["components"]["schemas"])
    # Each route says which token it needs, across services; open routes need none.
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token"
    # A person's sign-in may ask for an ID token; a client's own token may not.
    assert "openid" in flows["authorizationCode"]["scopes"]
    assert "openid" not in flows["clientCredentials"]["scopes"]
    paths = document["paths"]
    # What the server reads, no stricter: a blank optional text (and, below, a word in
    # any case).
    category = document["components"]["schemas"]["OrderLine"]["properties"]["category"]
    assert "minLength" not in str(category)
    assert paths["/v1/events"]["post"]["security"] == [{"oauth2": ["ingest:write"]}]
    assert paths["/v1/kpis"]["get"]["security"] == [{"oauth2": ["kpi:read"]}]
    assert paths["/v1/tenants"]["post"]["security"] == [{"oauth2": ["platform:admin"]}]
    assert paths["/v1/grants"]["get"]["security"] == [{"oauth2": []}]
    # Routes that take either admin say so: one requirement per scope, any suffices.
    either = [{"oauth2": ["platform:admin"]}, {"oauth2": ["tenant:admin"]}]
    assert paths["/v1/tenants/{tenant_id}"]["get"]["security"] == either
    assert paths["/v1/tenants/{tenant_id}/clients"]["post"]["security"] == either
    assert "security" not in paths["/oauth/token"]["post"]
    # GraphQL's data fields need kpi:read; its page and introspection need nothing.
    for method in ("get", "post"):
        assert paths["/graphql"][method]["security"] == [{"oauth2": ["kpi:read"]}, {}]
    # The list headers a KPI answer is negotiated and confirmed by are documented.
    headers = {p["name"] for p in paths["/v1/kpis"]["get"]["parameters"] if p["in"] == "header"}
    assert {"Accept", "If-None-Match"} <= headers
    # So is If-None-Match wherever a 304 is answered, and the ETag that 304 carries.
    for path, operations in paths.items():
        for method, operation in operations.items():
            if "304" not in operation["responses"]:
                continue
            asked = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            assert "If-None-Match" in asked, (method, path)
            assert "ETag" in operation["responses"]["304"].get("headers", {}), (method, path)
    # Every REST error is CONTRACT §2's one body, never FastAPI's validation error.
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not path.startswith("/v1/"):
                continue
            expected = {"422", "429", "503"} | (
                {"401", "403"} if "security" in operation else set()
            )
            # Every route that takes a body refuses one over the size limit.
            expected |= {"413"} if "requestBody" in operation else set()
            assert expected <= set(operation["responses"]), (method, path)
            # No route answers 400: a malformed query is 422, naming the parameter.
            assert "400" not in operation["responses"], (method, path)
            for status in expected:
                assert operation["responses"][status]["content"] == error_body, (method, path)
            assert "HTTPValidationError" not in str(operation), (method, path)
    assert paths["/v1/grants/{grant_id}"]["delete"]["responses"]["404"]["content"] == error_body
    # The token endpoint reads its form itself; the document still says what it takes.
    token = paths["/oauth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["grant_type"] and "code_verifier" in form["properties"]
    assert {"200", "400", "401"} <= set(token["responses"])
    # The erasure's confirmation is checked after the token, and required all the same.
    assert paths["/v1/tenants/{tenant_id}"]["delete"]["requestBody"]["required"] is True
    # 415 where a JSON body is taken, and nowhere else.
    assert "415" in paths["/v1/grants"]["post"]["responses"]
    assert "415" not in paths["/v1/grants"]["get"]["responses"]
    # And what only some routes answer.
    for path, method, status in (
        ("/v1/grants", "post", "409"),
        ("/v1/grants/{grant_id}", "patch", "409"),
        ("/v1/events:csv", "post", "415"),
        ("/v1/kpis", "get", "304"),
        ("/v1/users", "post", "409"),
        ("/v1/connections", "post", "409"),
        ("/v1/events", "post", "409"),
        ("/v1/exports/{export_id}/archive", "get", "304"),
        ("/v1/exports/{export_id}/archive", "get", "409"),
    ):
        assert status in paths[path][method]["responses"], (method, path, status)
    key = next(
        p for p in paths["/v1/events"]["post"]["parameters"] if p["name"] == "Idempotency-Key"
    )
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)
    # GraphQL, OAuth: what they really answer, refusals too, and never FastAPI's 422.
    graphql = paths["/graphql"]
    assert {"200", "400", "401", "403", "413", "415", "422", "429"} <= set(
        graphql["post"]["responses"]
    )
    assert set(graphql["get"]["responses"]["200"]["content"]) == {"application/json", "text/html"}
    assert "405" in graphql["get"]["responses"]
    assert "content" not in paths["/oauth/revoke"]["post"]["responses"]["200"]
    for path in ("/oauth/revoke", "/oauth/introspect"):
        assert {"200", "400", "401"} <= set(paths[path]["post"]["responses"]), path
    for method in ("get", "post"):
        authorize = paths["/oauth/authorize"][method]["responses"]
        assert "text/html" in authorize["400"]["content"]
        # The guards' refusals before the page, in the contract's body, not FastAPI's.
        assert authorize["422"]["content"]["application/json"]["schema"] == ERROR_BODY
        assert authorize["431"]["content"]["application/json"]["schema"] == ERROR_BODY
    assert paths["/oauth/authorize"]["post"]["responses"]["400"]["content"]["application/json"] == {
        "schema": ERROR_BODY
    }
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        assert {"408", "411", "413", "415", "422", "431"} <= set(paths[path]["post"]["responses"])
    assert {"422", "431"} <= set(paths["/.well-known/jwks.json"]["get"]["responses"])
    assert "413" not in paths["/.well-known/jwks.json"]["get"]["responses"]
    assert "431" in paths["/v1/kpis"]["get"]["responses"]
    # Fields a change may leave out but not set to null say so: generated clients sent
    # the null the document allowed, and were refused.
    schemas = document["components"]["schemas"]
    for model, fields in (
        ("GrantUpdate", ("stores", "scopes")),
        ("UserUpdate", ("name", "password", "role", "disabled")),
        ("ErasureConfirm", ("confirm",)),
    ):
        for field in fields:
            declared = schemas[model]["properties"][field]
            assert "anyOf" not in declared and "default" not in declared, (model, field)
    assert schemas["ErasureConfirm"]["required"] == ["confirm"]
    erase = paths["/v1/tenants/{tenant_id}"]["delete"]["requestBody"]
    assert erase["required"] is True
    assert erase["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErasureConfirm"
    }
    kpis = {p["name"]: p["schema"] for p in paths["/v1/kpis"]["get"]["parameters"]}
    grains = ["day", "week", "month", "quarter", "year", "total"]
    assert kpis["grain"]["enum"] == grains + [grain.upper() for grain in grains]
    assert kpis["from"]["format"] == "date"


ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def _refs(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


async def test_health_and_readiness_of_every_service(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for service in ("gateway", "ingest", "metrics", "targets"):
            assert (await client.get(f"{stack.url(service)}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{stack.url(service)}/readyz")
            assert ready.status_code == 200, ready.text
            own = {"consumer": "ok"} if service == "metrics" else {}
            # Each service takes tokens once it has read the gateway's revocations.
            own |= {"revocations": "ok"} if service != "gateway" else {}
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok", **own}


async def test_readiness_fails_when_the_broker_is_unreachable(stack: Stack) -> None:
    with refusing_port() as down:
        port = free_port()
        settings = service_settings("targets", stack.config).model_copy(
            update={"port": port, "kafka_bootstrap_servers": f"127.0.0.1:{down}"}
        )
        from services.targets.app import create_app as create_targets

        app = create_targets(settings)
        async with serve_app(app, "127.0.0.1", port), httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "unreachable"


async def test_readiness_names_a_database_and_a_broker_that_answer_nothing(stack: Stack) -> None:
    # What a frozen server looks like from outside: connections accepted, nothing said.
    held: list[asyncio.StreamWriter] = []

    async def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    port = free_port()
    settings = service_settings("targets", stack.config).model_copy(
        update={"port": port, "kafka_bootstrap_servers": f"127.0.0.1:{silent_port}"}
    )
    from services.targets.app import create_app as create_targets

    app = create_targets(settings)
    frozen_db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/x", "targets")
    try:
        async with serve_app(app, "127.0.0.1", port), httpx.AsyncClient(timeout=30) as client:
            working_db, app.state.db = app.state.db, frozen_db
            started = time.monotonic()
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
            waited = time.monotonic() - started
            app.state.db = working_db
    finally:
        await frozen_db.dispose()
        for writer in held:
            writer.close()
        silent.close()
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {
            "database": f"unresponsive: no answer within {READY_CHECK_SECONDS:g} s",
            "broker": "unreachable",
            "revocations": "ok",
        },
    }
    # Each check gives up after its limit instead of waiting with the server.
    assert waited < 2 * READY_CHECK_SECONDS + 2


async def test_downstream_errors_reach_the_caller_unchanged(
    stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    fake = FastAPI()

    @fake.get("/v1/targets/plans")
    async def plans(request: Request) -> Response:
        return Response(
            b'{"error":"rate_limited","detail":"slow down"}',
            status_code=429,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
        )

    async with fake_service(fake) as url, own_gateway(stack, targets_url=url) as client:
        response = await client.get(
            "/v1/targets/plans", params={"year": "2026"}, headers=tenant.headers
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "rate_limited", "detail": "slow down"}


async def test_openapi_name_clashes_get_the_service_prefix(stack: Stack) -> None:
    def service(name: str, field: str) -> FastAPI:
        app = FastAPI()
        # Each fake has its own model named Plan; only the field differs.
        fields: dict[str, Any] = {field: (str, ...)}
        model: Any = create_model("Plan", **fields)

        @app.get(f"/v1/{name}/plans", response_model=model)
        async def plans() -> Any:
            raise AssertionError("never called")

        return app

    async with (
        fake_service(service("targets", "year")) as targets,
        fake_service(service("kpis", "period")) as metrics,
        fake_service(service("events", "year")) as ingest,
        own_gateway(stack, targets_url=targets, metrics_url=metrics, ingest_url=ingest) as client,
    ):
        document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    # ingest comes first and keeps the name; metrics' different Plan is renamed;
    # targets' Plan equals ingest's and is shared.
    assert schemas["Plan"]["properties"].keys() == {"year"}
    assert schemas["metrics_Plan"]["properties"].keys() == {"period"}
    assert "targets_Plan" not in schemas
    ok = "200"
    ref = "content", "application/json", "schema", "$ref"

    def target(path: str) -> str:
        node = document["paths"][path]["get"]["responses"][ok]
        for key in ref:
            node = node[key]
        return str(node)

    assert target("/v1/kpis/plans") == "#/components/schemas/metrics_Plan"
    assert target("/v1/targets/plans") == "#/components/schemas/Plan"
    assert target("/v1/events/plans") == "#/components/schemas/Plan"


async def test_what_a_post_creates_says_where_it_is(
    http: httpx.AsyncClient, admin_token: str, new_tenant: NewTenant
) -> None:
    """A generic REST client follows Location to read what it created (RFC 9110 §10.2.2)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    seller, agency = await new_tenant(), await new_tenant()
    created = (
        ("/v1/tenants", {"name": "Located"}, admin, 201),
        ("/v1/grants", {"agency_tenant_id": agency.tenant_id, "stores": ["s1"],
                        "scopes": ["kpi:read"]}, seller.headers, 201),
        ("/v1/users", {"email": "located@example.com", "name": "L", "role": "analyst",
                       "password": "a-long-password-1"}, seller.headers, 201),
        ("/v1/exports", None, seller.headers, 202),
    )  # fmt: skip
    for path, body, headers, status in created:
        answer = await http.post(path, json=body, headers=headers)
        assert answer.status_code == status, (path, answer.text)
        location = answer.headers["location"]
        assert location == f"{path}/{answer.json()['id']}", (path, location)
        read = await http.get(location, headers=headers)
        assert read.status_code == 200 and read.json()["id"] == answer.json()["id"], location
    erased = await http.request(
        "DELETE",
        f"/v1/tenants/{agency.tenant_id}",
        json={"confirm": agency.tenant_id},
        headers=agency.headers,
    )
    assert erased.status_code == 202
    assert erased.headers["location"] == f"/v1/tenants/{agency.tenant_id}/erasure"
    document = (await http.get("/openapi.json")).json()["paths"]
    for path, method, answered in (
        ("/v1/tenants", "post", "201"),
        ("/v1/grants", "post", "201"),
        ("/v1/users", "post", "201"),
        ("/v1/exports", "post", "202"),
        ("/v1/tenants/{tenant_id}", "delete", "202"),
    ):
        assert "Location" in document[path][method]["responses"][answered]["headers"], path


async def test_each_address_make_run_prints_leads_somewhere(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    """A newcomer opening the gateway's address met a 404."""
    index = await http.get("/")
    assert index.status_code == 200
    assert index.json()["graphql"] == "/graphql"
    for link in ("graphql", "openapi", "oauth", "health"):
        assert (await http.get(index.json()[link])).status_code == 200, link
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        own = await ingest.get("/")
    assert own.json() == {
        "service": "Lodestar ingest",
        "health": "/healthz",
        "ready": "/readyz",
        "openapi": "/openapi.json",
    }
