"""Users, roles and limits; the authorization code flow with PKCE; refresh rotation;
RFC 7009 revocation and RFC 7662 introspection."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import col, select

from services.gateway.graphql.revalidation import MEMORY
from services.gateway.oauth.revoked import RevokedTokens
from services.gateway.oauth.sessions import IssuedAccessToken, RevokedAccessToken
from services.gateway.oauth.throttle import MAX_FAILURES, PAUSE
from services.gateway.users import passwords
from services.gateway.users.emails import stored_spellings
from shared.revocations import REVOKED_TOKENS_PATH, revocation_digest
from tests.conftest import NewTenant, Stack, fetch_token
from tests.gateway.login import (
    PASSWORD,
    REDIRECT,
    add_user,
    authorize_params,
    claims_of,
    code_form,
    exchange,
    frontend_client,
    pkce,
    refusal_of,
    sign_in,
    user_tokens,
)
from tests.metrics.test_kpis import line


async def test_user_signs_in_with_pkce_and_refresh_tokens_rotate(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    analyst = await add_user(http, admin, "analyst")

    query, verifier = await sign_in(http, client_id, analyst["email"].upper())
    assert query["state"] == ["xyz"] and query["iss"][0].startswith("http")
    code = query["code"][0]
    wrong = await exchange(
        http,
        client_id,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier="x" * 50,
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The failed attempt used the code up: it gets one try.
    retry = await exchange(
        http,
        client_id,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert retry.status_code == 400

    query, verifier = await sign_in(http, client_id, analyst["email"])
    form = code_form(query, verifier)
    issued = await exchange(http, client_id, **form)
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"] == "no-store"
    tokens = issued.json()
    # An analyst reads only: ingest:write was asked for and is not granted.
    assert tokens["scope"] == "kpi:read"
    claims = claims_of(tokens["access_token"])
    assert claims["sub"] == analyst["id"] and claims["tenant"] == admin.tenant_id
    assert claims["roles"] == ["analyst"] and claims["client_id"] == client_id
    catalog = await http.get(
        "/v1/kpis/catalog", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert catalog.status_code == 200
    push = await http.post(
        "/v1/events",
        json={"events": []},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert push.status_code == 403 and push.json()["error"] == "insufficient_scope"

    # A replayed code revokes the tokens it produced.
    replayed = await exchange(http, client_id, **form)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    dead = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert dead.status_code == 400

    # Rotation: each refresh token works once; reusing one ends the whole family.
    first = await user_tokens(http, client_id, analyst["email"])
    second = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200
    newest = second.json()["refresh_token"]
    assert newest != first["refresh_token"]
    stolen = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    after_theft = await exchange(http, client_id, grant_type="refresh_token", refresh_token=newest)
    assert after_theft.status_code == 400


async def test_a_refresh_refused_for_its_scope_leaves_the_token_usable(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """RFC 6749 §6: the old refresh token goes only when a new one is issued. A
    client's scope mistake must not end its user's sign-in."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    analyst = await add_user(http, admin, "analyst")
    tokens = await user_tokens(http, client_id, analyst["email"])
    beyond = await exchange(
        http,
        client_id,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        scope="kpi:read ingest:write",
    )
    assert beyond.status_code == 400, beyond.text
    assert beyond.json() == {
        "error": "invalid_scope",
        "error_description": "not granted at sign-in: ingest:write",
    }
    still = await http.get(
        "/v1/kpis/catalog", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert still.status_code == 200
    retried = await exchange(
        http,
        client_id,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        scope="kpi:read",
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["scope"] == "kpi:read"


async def test_a_refresh_narrowed_once_keeps_the_sign_ins_scope_for_the_next(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """RFC 6749 §6: a refresh naming no scope gets the scope the sign-in granted, not
    the narrower one the refresh before asked for."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    manager = await add_user(http, admin, "admin")
    tokens = await user_tokens(http, client_id, manager["email"])
    assert tokens["scope"] == "ingest:write kpi:read"

    async def refreshed(refresh_token: str, **scope: str) -> dict[str, Any]:
        response = await exchange(
            http, client_id, grant_type="refresh_token", refresh_token=refresh_token, **scope
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    narrowed = await refreshed(tokens["refresh_token"], scope="kpi:read")
    assert narrowed["scope"] == "kpi:read"
    assert claims_of(narrowed["access_token"])["scope"] == "kpi:read"
    whole = await refreshed(narrowed["refresh_token"])
    assert whole["scope"] == "ingest:write kpi:read"
    assert claims_of(whole["access_token"])["scope"] == "ingest:write kpi:read"
    asked_again = await refreshed(whole["refresh_token"], scope="kpi:read ingest:write")
    assert asked_again["scope"] == "ingest:write kpi:read"


async def test_oauth_errors_echoing_what_a_client_sent_stay_client_errors(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An error_description holds printable ASCII but '"' and '\\' (RFC 6749 §5.2):
    a scope or parameter name holding others was a 500, not the client's error."""
    tenant = await new_tenant(scopes=["kpi:read"])
    basic = httpx.BasicAuth(tenant.client_id, tenant.client_secret)
    cases = {
        "grant_type=client_credentials&scope=kpi:read%20%C3%BC%22%5C": (
            "invalid_scope",
            "scope not allowed for this client: U+00FCU+0022U+005C",
        ),
        "grant_type=client_credentials&%C3%BC=1&%C3%BC=2": (
            "invalid_request",
            "parameters must not repeat: U+00FC",
        ),
        "grant_type=client_credentials&%C3%BC=%00": (
            "invalid_request",
            "parameters must not contain the NUL character: U+00FC",
        ),
    }
    for body, (error, description) in cases.items():
        for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
            if path != "/oauth/token" and error == "invalid_scope":
                continue
            response = await http.post(
                path,
                content=body + "&token=x",
                auth=basic,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 400, (path, body, response.text)
            assert response.json() == {"error": error, "error_description": description}


async def test_a_loopback_redirect_may_take_any_port(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """RFC 8252 §7.3: a native or command-line tool listens on a port the system gives
    it, so a registered loopback IP redirect matches at any port; nothing else does."""
    admin = await new_tenant()
    registered = ["http://127.0.0.1/callback", "http://[::1]:8080/cb"]
    created = await http.post(
        f"/v1/tenants/{admin.tenant_id}/clients",
        json={"name": "cli", "scopes": ["kpi:read"], "public": True, "redirect_uris": registered},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    client_id = created.json()["client_id"]
    user = await add_user(http, admin, "viewer")
    verifier, challenge = pkce()
    for uri in ("http://127.0.0.1:51234/callback", "http://[::1]:40000/cb"):
        params = {
            **authorize_params(client_id, challenge),
            "redirect_uri": uri,
            "scope": "kpi:read",
        }
        page = await http.get("/oauth/authorize", params=params)
        assert page.status_code == 200, (uri, page.text)
        # Chromium holds every redirect the form's answer leads to against form-action,
        # the client's own onward ones too: the form's page sets none.
        policy = page.headers["content-security-policy"]
        assert "form-action" not in policy and "frame-ancestors 'none'" in policy, policy
        posted = await http.post(
            "/oauth/authorize", data={**params, "email": user["email"], "password": PASSWORD}
        )
        assert posted.status_code == 303 and posted.headers["location"].startswith(uri + "?")
        code = parse_qs(urlsplit(posted.headers["location"]).query)["code"][0]
        # The code goes only with the very URI it was sent to.
        tokens = await exchange(
            http, client_id, grant_type="authorization_code", code=code,
            redirect_uri=uri, code_verifier=verifier,
        )  # fmt: skip
        assert tokens.status_code == 200, tokens.text
    for uri in (
        "http://127.0.0.1:51234/other",
        "https://127.0.0.1:51234/callback",
        "http://localhost:51234/callback",
        "http://evil@127.0.0.1:51234/callback",
        "http://127.0.0.1:port/callback",
        "http://127.0.0.1:51234/callback#frag",  # RFC 6749 §3.1.2: no fragment
        "http://127.0.0.1:51234/callback#",
        "http://:pw@127.0.0.1:51234/callback",  # an empty user name is one too
        # Ports no browser opens.
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:00000/callback",
        "http://127.0.0.1:/callback",
    ):
        params = {**authorize_params(client_id, challenge), "redirect_uri": uri}
        page = await http.get("/oauth/authorize", params=params)
        assert page.status_code == 400 and "location" not in page.headers, uri


async def test_an_openid_sign_in_gets_an_id_token_naming_its_nonce(
    http: httpx.AsyncClient, new_tenant: NewTenant, stack: Stack
) -> None:
    """An agency portal on an OpenID Connect library asks for ``openid`` and a nonce,
    and checks the ID token against the JWKS, its issuer, audience and nonce."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, "viewer")
    verifier, challenge = pkce()
    params = {
        **authorize_params(client_id, challenge),
        "scope": "openid kpi:read",
        "nonce": "n-0S6_WzA2Mj",
    }
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and 'name="nonce" value="n-0S6_WzA2Mj"' in page.text
    before = int(time.time())
    posted = await http.post(
        "/oauth/authorize", data={**params, "email": user["email"], "password": PASSWORD}
    )
    assert posted.status_code == 303, posted.text
    code = parse_qs(urlsplit(posted.headers["location"]).query)["code"][0]
    answer = await exchange(
        http, client_id, grant_type="authorization_code", code=code,
        redirect_uri=REDIRECT, code_verifier=verifier,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["scope"] == "kpi:read openid"
    keys = KeySet.import_key_set((await http.get("/.well-known/jwks.json")).json())
    id_token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    assert id_token.header["typ"] == "JWT"
    claims = id_token.claims
    assert (claims["iss"], claims["aud"], claims["azp"]) == (stack.gateway, client_id, client_id)
    assert (claims["sub"], claims["tenant"]) == (user["id"], admin.tenant_id)
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert before - 1 <= claims["auth_time"] <= claims["iat"] < claims["exp"]
    # The access token reads as before; the ID token opens nothing.
    reads = await http.get(
        "/v1/kpis/catalog", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert reads.status_code == 200
    refused = await http.get(
        "/v1/kpis/catalog", headers={"Authorization": f"Bearer {tokens['id_token']}"}
    )
    assert refused.status_code == 401
    # A refresh is no new sign-in: no ID token (OpenID Connect Core §12.2).
    refreshed = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 200 and "id_token" not in refreshed.json()
    assert refreshed.json()["scope"] == "kpi:read openid"
    # Without openid, no ID token; a nonce longer than a nonce goes back refused.
    plain = await user_tokens(http, client_id, user["email"])
    assert "id_token" not in plain
    too_long = await http.get("/oauth/authorize", params={**params, "nonce": "n" * 256})
    refusal = refusal_of(too_long)
    assert refusal["error"] == ["invalid_request"] and refusal["state"] == ["xyz"]


async def test_userinfo_names_the_signed_in_user_as_they_are_now(
    http: httpx.AsyncClient, pg: asyncpg.Connection, new_tenant: NewTenant, stack: Stack
) -> None:
    """A portal shows who signed in: OpenID Connect UserInfo, listed in discovery, for
    an access token granted ``openid``; the user's limits as they are now."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, "viewer", limits={"marketplaces": ["MX"]})
    discovery = (await http.get("/.well-known/openid-configuration")).json()
    assert discovery["userinfo_endpoint"] == f"{stack.gateway}/oauth/userinfo"
    documented = (await http.get("/openapi.json")).json()["paths"]["/oauth/userinfo"]
    assert {"200", "401", "403"} <= set(documented["get"]["responses"])
    assert {"email", "name"} <= set(discovery["claims_supported"])
    tokens = await user_tokens(http, client_id, user["email"], scope="openid kpi:read")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    for answer in (
        await http.get("/oauth/userinfo", headers=bearer),
        await http.post("/oauth/userinfo", headers=bearer),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json() == {
            "sub": user["id"],
            "tenant": admin.tenant_id,
            "email": user["email"],
            "name": "Viewer",
            "roles": ["viewer"],
            "limits": {"marketplaces": ["MX"]},
        }

    without_openid = await user_tokens(http, client_id, user["email"])
    refused = await http.get(
        "/oauth/userinfo",
        headers={"Authorization": f"Bearer {without_openid['access_token']}"},
    )
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert 'scope="openid"' in refused.headers["www-authenticate"]
    client_token = await http.get("/oauth/userinfo", headers=admin.headers)
    assert client_token.status_code == 403
    anonymous = await http.get("/oauth/userinfo")
    assert anonymous.status_code == 401 and "invalid_token" in anonymous.headers["www-authenticate"]

    # A user disabled by any path, even one that left a token unrevoked, is nobody.
    other = await add_user(http, admin, "viewer")
    other_tokens = await user_tokens(http, client_id, other["email"], scope="openid")
    await pg.execute("UPDATE gateway.users SET disabled_at = now() WHERE id = $1", other["id"])
    disabled = await http.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {other_tokens['access_token']}"}
    )
    assert disabled.status_code == 401 and disabled.json()["error"] == "invalid_token"

    # Deleting the user ends their tokens: UserInfo names nobody after.
    deleted = await http.delete(f"/v1/users/{user['id']}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    gone = await http.get("/oauth/userinfo", headers=bearer)
    assert gone.status_code == 401


async def test_a_client_of_one_redirect_uri_may_leave_it_out(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """RFC 6749 §3.1.2.3: the only URI a client registered is its way back by default."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, "viewer")
    verifier, challenge = pkce()
    params = authorize_params(client_id, challenge)
    del params["redirect_uri"]
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "<form" in page.text
    refused = await http.get("/oauth/authorize", params={**params, "code_challenge": "short"})
    assert refusal_of(refused)["error"] == ["invalid_request"]

    async def redeem(code_of: dict[str, str], **redirect_uri: str) -> httpx.Response:
        """Signs in by ``code_of`` (the query of a request naming no redirect URI, or
        none for one that names it) and exchanges the code."""
        if code_of:
            posted = await http.post(
                "/oauth/authorize", data={**code_of, "email": user["email"], "password": PASSWORD}
            )
            assert posted.status_code == 303, posted.text
            assert posted.headers["location"].startswith(REDIRECT + "?code=")
            code, used = parse_qs(urlsplit(posted.headers["location"]).query)["code"][0], verifier
        else:
            query, used = await sign_in(http, client_id, user["email"])
            code = query["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": used}
        return await exchange(http, client_id, **form, **redirect_uri)

    # The token request names the redirect URI the authorization request named, or,
    # where it named none, none or the one the code went to.
    elsewhere = await redeem(params, redirect_uri="http://localhost:5173/other")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_grant"
    unnamed = await redeem({})
    assert unnamed.status_code == 400 and unnamed.json()["error"] == "invalid_grant"
    tokens = await redeem(params)
    assert tokens.status_code == 200, tokens.text
    named = await redeem(params, redirect_uri=REDIRECT)
    assert named.status_code == 200, named.text

    # A client of two must say which.
    two = await http.post(
        f"/v1/tenants/{admin.tenant_id}/clients",
        json={
            "name": "portal",
            "scopes": ["kpi:read"],
            "public": True,
            "redirect_uris": [REDIRECT, "https://portal.example/cb"],
        },
        headers=admin.headers,
    )
    assert two.status_code == 201, two.text
    either = {**params, "client_id": two.json()["client_id"]}
    page = await http.get("/oauth/authorize", params=either)
    assert page.status_code == 400 and "location" not in page.headers
    assert "redirect_uri is required: this application registered 2" in page.text


async def test_authorize_errors(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, "viewer")
    _, challenge = pkce()
    metadata = await http.get("/.well-known/oauth-authorization-server")
    issuer = metadata.json()["issuer"]
    # Client and redirect URI problems stay on the page: no redirect to an unknown URI.
    for change in (
        {"client_id": "cl_nobody"},
        {"client_id": ""},
        {"redirect_uri": "https://evil.example/cb"},
    ):
        page = await http.get(
            "/oauth/authorize", params={**authorize_params(client_id, challenge), **change}
        )
        assert page.status_code == 400 and "location" not in page.headers, change
        # A page that shows no form lets no form go anywhere.
        assert "form-action 'none';" in page.headers["content-security-policy"], change
    # Everything else is for the client, with the state: on the page, linked back to
    # it, but not sent there by itself (anyone may register a phishing redirect URI).
    for change, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "invalid_request"),
        # OpenID Connect: no page at all was asked for, and no one is signed in here.
        ({"prompt": "none"}, "login_required"),
    ):
        answer = await http.get(
            "/oauth/authorize", params={**authorize_params(client_id, challenge), **change}
        )
        query = refusal_of(answer)
        assert "<form" not in answer.text, change
        assert query["error"] == [error] and query["state"] == ["xyz"], change
        # RFC 9207: errors name the issuer as successes do.
        assert query["iss"] == [issuer], change
    # RFC 6749 §3.1: no parameter twice; one other than client_id and redirect_uri goes
    # back to the client too.
    params: list[tuple[str, Any]] = list(authorize_params(client_id, challenge).items())
    for repeated in ("scope", "state", "code_challenge"):
        again = [*params, (repeated, dict(params)[repeated])]
        answer = await http.get("/oauth/authorize", params=again)
        query = refusal_of(answer)
        assert query["error"] == ["invalid_request"], repeated
        assert query["error_description"] == [f"given more than once: {repeated}"]
        submitted = await http.post(
            "/oauth/authorize",
            content=urlencode([*again, ("email", user["email"]), ("password", PASSWORD)]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert refusal_of(submitted)["error"] == ["invalid_request"], repeated
    for repeated in ("client_id", "redirect_uri"):
        page = await http.get(
            "/oauth/authorize", params=[*params, (repeated, dict(params)[repeated])]
        )
        assert page.status_code == 400 and "location" not in page.headers, repeated
    # Wrong password and unknown e-mail read the same.
    for email, password in ((user["email"], "wrong password!!"), ("nobody@example.com", PASSWORD)):
        answer = await http.post(
            "/oauth/authorize",
            data={**authorize_params(client_id, challenge), "email": email, "password": password},
        )
        assert answer.status_code == 401 and "Wrong e-mail or password" in answer.text
    # A user of another tenant cannot sign in to this tenant's application, and is as
    # unknown to it as an address no one has: the answer tells no account exists.
    other_admin = await new_tenant()
    stranger = await add_user(http, other_admin, "owner")
    answer = await http.post(
        "/oauth/authorize",
        data={
            **authorize_params(client_id, challenge),
            "email": stranger["email"],
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 401 and "Wrong e-mail or password" in answer.text
    # A public client cannot use a secret, nor get client_credentials tokens.
    cc = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id}
    )
    assert cc.status_code == 401
    missing = await exchange(http, client_id, grant_type="authorization_code", code="x")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    # A NUL in the sign-in form is refused on the page, never a 500.
    for field in ("email", "client_id", "password"):
        form = {**authorize_params(client_id, challenge), "email": user["email"]}
        form = {**form, "password": PASSWORD, field: "a\x00b"}
        answer = await http.post("/oauth/authorize", data=form)
        assert answer.status_code == 400 and "NUL" in answer.text, (field, answer.text)
    # RFC 7636 §4.1: a verifier of the wrong form is a bad request, and leaves the code.
    query, verifier = await sign_in(http, client_id, user["email"])
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT}
    for malformed in ("short", "x" * 129, "x" * 42 + " ", "é" * 43):
        answer = await exchange(http, client_id, **form, code_verifier=malformed)
        assert answer.status_code == 400, malformed
        assert answer.json()["error"] == "invalid_request", malformed
        assert "code_verifier" in answer.json()["error_description"], malformed
    assert (await exchange(http, client_id, **form, code_verifier=verifier)).status_code == 200


async def test_user_and_client_validation_names_the_field(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    good = {"email": "a@example.com", "name": "A", "password": PASSWORD, "role": "viewer"}
    for change, field in (
        ({"password": "short"}, "password"),
        ({"role": "king"}, "role"),
        ({"email": "not-an-address"}, "email"),
        ({"limits": {"marketplaces": ["mexico"]}}, "limits.marketplaces"),
        # Two upper-case letters, but no country: a user limited to nothing at all.
        ({"limits": {"marketplaces": ["UK"]}}, "limits.marketplaces"),
        ({"limits": {"marketplaces": ["ZZ"]}}, "limits.marketplaces"),
        ({"limits": {"planets": ["mars"]}}, "limits.planets"),
    ):
        response = await http.post("/v1/users", json={**good, **change}, headers=admin.headers)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["field"] == field, change
    # In words a person acts on, not the parser's (nor its pattern).
    wordings: list[tuple[dict[str, Any], str]] = [
        ({"role": "king"}, "must be one of 'owner', 'admin', 'manager', 'analyst' or 'viewer'"),
        ({"email": "not-an-address"}, "must be an e-mail address such as ana@example.com"),
        ({"limits": {"stores": "s1"}}, "must be a JSON list"),
    ]
    for worded, reason in wordings:
        response = await http.post("/v1/users", json={**good, **worded}, headers=admin.headers)
        assert response.json()["errors"][0]["reason"] == reason, response.text
    uk = {**good, "limits": {"marketplaces": ["UK"]}}
    named = await http.post("/v1/users", json=uk, headers=admin.headers)
    assert "the United Kingdom is GB" in named.json()["errors"][0]["reason"]
    # Every access token carries the limits, and no verifier takes one past 128,000
    # bytes: a user limited to 500 long store ids was made, then refused everywhere.
    wide = {**good, "limits": {"stores": [f"store-{n:03d}-" + "x" * 246 for n in range(500)]}}
    too_wide = await http.post("/v1/users", json=wide, headers=admin.headers)
    assert too_wide.status_code == 422, too_wide.text
    [error] = too_wide.json()["errors"]
    assert error["field"] == "limits"
    assert error["reason"].startswith("must take at most 64,000 bytes written as JSON"), error
    fits = {**good, "limits": {"stores": [f"store-{n:03d}" for n in range(500)]}}
    assert (await http.post("/v1/users", json=fits, headers=admin.headers)).status_code == 201
    first = await add_user(http, admin, "viewer")
    duplicate = await http.post(
        "/v1/users", json={**good, "email": first["email"].upper()}, headers=admin.headers
    )
    assert duplicate.status_code == 409
    for body, field in (
        ({"public": True}, "redirect_uris"),
        ({"public": True, "redirect_uris": ["http://example.com/cb"]}, "redirect_uris"),
        ({"public": True, "redirect_uris": ["https://app.example/cb#x"]}, "redirect_uris"),
    ):
        response = await http.post(
            f"/v1/tenants/{admin.tenant_id}/clients",
            json={"name": "web", "scopes": ["kpi:read"], **body},
            headers=admin.headers,
        )
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["field"] == field, response.json()
    reader = await new_tenant(scopes=["kpi:read"])
    assert (await http.get("/v1/users", headers=reader.headers)).status_code == 403
    other = await new_tenant()
    assert (await http.get(f"/v1/users/{first['id']}", headers=other.headers)).status_code == 404


def sale(event_id: str, marketplace: str, price: str) -> dict[str, Any]:
    return line(
        event_id,
        f"o-{event_id}",
        1,
        price,
        "2026-03-10T18:00:00Z",
        store=f"acme-{marketplace}",
        marketplace=marketplace,
    )


async def test_a_user_limited_to_mx_sees_mx_only_and_sessions_end(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    manager = await add_user(http, admin, "manager", limits={"marketplaces": ["MX"]})
    pushed = await http.post(
        "/v1/events",
        json={"events": [sale("a", "US", "10.00"), sale("b", "MX", "4.00")]},
        headers=admin.headers,
    )
    assert pushed.status_code == 202
    tokens = await user_tokens(http, client_id, manager["email"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    params = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}
    deadline = time.monotonic() + 30
    while True:
        everything = await http.get("/v1/kpis", params=params, headers=admin.headers)
        if everything.json()["rows"][0]["values"][0]["value"] == 14.0:
            break
        assert time.monotonic() < deadline, everything.text
        await asyncio.sleep(0.2)
    limited = await http.get("/v1/kpis", params=params, headers=bearer)
    assert limited.json()["rows"][0]["values"][0]["value"] == 4.0
    outside = await http.get("/v1/kpis", params={**params, "marketplaces": "US"}, headers=bearer)
    assert outside.status_code == 403 and 'marketplace "US"' in outside.json()["detail"]
    wrong_market = await http.post(
        "/v1/events", json={"events": [sale("c", "US", "1.00")]}, headers=bearer
    )
    assert wrong_market.status_code == 403
    assert wrong_market.json()["errors"][0]["field"] == "source.marketplace"

    # Introspection needs a confidential client of the same tenant.
    introspected = await http.post(
        "/oauth/introspect",
        data={"token": tokens["refresh_token"]},
        auth=(admin.client_id, admin.client_secret),
    )
    assert introspected.json()["active"] is True
    assert introspected.json()["token_type"] == "refresh_token"
    public = await http.post(
        "/oauth/introspect", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert public.status_code == 401
    stranger = await new_tenant()
    foreign = await http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        auth=(stranger.client_id, stranger.client_secret),
    )
    assert foreign.json() == {"active": False}
    # RFC 7009 §2.1: another client's live token is refused, and stays live; a 200 let
    # the caller believe it had ended a credential it meant to end.
    for live in (tokens["access_token"], tokens["refresh_token"]):
        not_its = await http.post(
            "/oauth/revoke", data={"token": live}, auth=(stranger.client_id, stranger.client_secret)
        )
        assert not_its.status_code == 400, not_its.text
        assert not_its.json()["error"] == "unauthorized_client"
    still = await http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        auth=(admin.client_id, admin.client_secret),
    )
    assert still.json()["active"] is True

    # Revoking the access token and disabling the user end both tokens.
    revoked = await http.post(
        "/oauth/revoke", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    access_state = await http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        auth=(admin.client_id, admin.client_secret),
    )
    assert access_state.json() == {"active": False}
    disabled = await http.patch(
        f"/v1/users/{manager['id']}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    refreshed = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400
    # Ended, it is a token no longer (RFC 7009 §2.2: 200), whoever names it.
    dead = await http.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(stranger.client_id, stranger.client_secret),
    )
    assert dead.status_code == 200
    unknown = await http.post("/oauth/revoke", data={"token": "nothing", "client_id": client_id})
    assert unknown.status_code == 200
    no_token = await http.post("/oauth/revoke", data={"client_id": client_id})
    assert no_token.status_code == 400 and no_token.json()["error"] == "invalid_request"


async def test_metadata_lists_the_user_endpoints(http: httpx.AsyncClient) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    for name, path in (
        ("authorization_endpoint", "/oauth/authorize"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
    ):
        assert metadata[name].endswith(path)
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token"} <= set(metadata["grant_types_supported"])


async def test_a_revoked_access_token_is_refused_at_once_everywhere_through_the_gateway(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    token = await fetch_token(http, tenant.client_id, tenant.client_secret)
    bearer = {"Authorization": f"Bearer {token}"}
    params = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}
    graphql = {"query": "{ kpiCatalog { id } }"}
    assert (await http.get("/v1/kpis", params=params, headers=bearer)).status_code == 200
    assert "errors" not in (await http.post("/graphql", json=graphql, headers=bearer)).json()

    revoked = await http.post(
        "/oauth/revoke", data={"token": token}, auth=(tenant.client_id, tenant.client_secret)
    )
    assert revoked.status_code == 200
    for answer in (
        await http.get("/v1/kpis", params=params, headers=bearer),
        await http.post("/v1/events", json={"events": []}, headers=bearer),
        await http.get("/v1/grants", headers=bearer),
    ):
        assert answer.status_code == 401, answer.text
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert answer.json()["detail"] == "token has been revoked"
    refused = await http.post("/graphql", json=graphql, headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # Another token of the same client still works.
    fresh = await fetch_token(http, tenant.client_id, tenant.client_secret)
    fresh_bearer = {"Authorization": f"Bearer {fresh}"}
    assert (await http.get("/v1/kpis", params=params, headers=fresh_bearer)).status_code == 200
    # A gateway started afresh reads the revocation back.
    reloaded = RevokedTokens(stack.apps["gateway"].state.db)
    await reloaded.load()
    jti = claims_of(token)["jti"]
    assert jti in reloaded and claims_of(fresh)["jti"] not in reloaded


async def test_a_revoked_access_token_is_refused_on_the_services_own_ports_too(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    """Services verify tokens themselves: a leaked ERP token revoked at the gateway
    must not keep writing through ingest's own port until it expires. Each service
    reads the revocations from the gateway every second."""
    tenant = await new_tenant()
    token = await fetch_token(http, tenant.client_id, tenant.client_secret)
    fresh = await fetch_token(http, tenant.client_id, tenant.client_secret)
    # Each service's own route, and the body it takes (an empty batch is 422 after the token).
    asks: dict[str, tuple[str, str, bytes | None]] = {
        "ingest": ("POST", "/v1/events", b'{"events": []}'),
        "metrics": ("GET", "/v1/kpis/catalog", None),
        "targets": ("GET", "/v1/targets/plans", None),
    }
    async with httpx.AsyncClient(timeout=10) as direct:

        async def status(service: str, access_token: str) -> int:
            method, path, body = asks[service]
            headers = {"Authorization": f"Bearer {access_token}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            answer = await direct.request(
                method, stack.url(service) + path, headers=headers, content=body
            )
            return answer.status_code

        assert [await status(s, token) for s in asks] == [422, 200, 200]
        revoked = await http.post(
            "/oauth/revoke", data={"token": token}, auth=(tenant.client_id, tenant.client_secret)
        )
        assert revoked.status_code == 200
        waited = 0.0
        while [await status(s, token) for s in asks] != [401, 401, 401]:
            assert waited < 5, "a service still takes the revoked token"
            await asyncio.sleep(0.2)
            waited += 0.2
        assert [await status(s, fresh) for s in asks] == [422, 200, 200]
    # The list is read without a token: it names digests, no token id and no client.
    listed = await http.get(REVOKED_TOKENS_PATH)
    jti = claims_of(token)["jti"]
    assert revocation_digest(jti) in listed.json()["revoked"]
    assert jti not in listed.json()["revoked"]
    # Tagged: the services, asking every second, get 304 until it changes.
    held = {"If-None-Match": listed.headers["etag"]}
    assert (await http.get(REVOKED_TOKENS_PATH, headers=held)).status_code == 304
    revoked = await http.post(
        "/oauth/revoke", data={"token": fresh}, auth=(tenant.client_id, tenant.client_secret)
    )
    assert revoked.status_code == 200
    changed = await http.get(REVOKED_TOKENS_PATH, headers=held)
    assert changed.status_code == 200 and changed.headers["etag"] != held["If-None-Match"]
    assert revocation_digest(claims_of(fresh)["jti"]) in changed.json()["revoked"]


async def test_ending_a_sign_in_ends_the_access_tokens_it_issued(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    analyst = await add_user(http, admin, "analyst")
    params = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}

    async def status(access_token: str) -> int:
        bearer = {"Authorization": f"Bearer {access_token}"}
        return (await http.get("/v1/kpis", params=params, headers=bearer)).status_code

    async def active(access_token: str) -> bool:
        answer = await http.post(
            "/oauth/introspect",
            data={"token": access_token},
            auth=(admin.client_id, admin.client_secret),
        )
        return bool(answer.json()["active"])

    async def refreshed(refresh_token: str) -> dict[str, Any]:
        answer = await exchange(
            http, client_id, grant_type="refresh_token", refresh_token=refresh_token
        )
        assert answer.status_code == 200, answer.text
        tokens: dict[str, Any] = answer.json()
        return tokens

    # A refresh token used twice: the thief's access token and the user's both end.
    first = await user_tokens(http, client_id, analyst["email"])
    second = await refreshed(first["refresh_token"])
    other_sign_in = await user_tokens(http, client_id, analyst["email"])
    assert await status(first["access_token"]) == await status(second["access_token"]) == 200
    stolen = await exchange(
        http, client_id, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert stolen.status_code == 400
    for ended in (first, second):
        assert await status(ended["access_token"]) == 401
        assert not await active(ended["access_token"])
    # Another sign-in of the same user is another family: it goes on.
    assert await status(other_sign_in["access_token"]) == 200

    # A replayed authorization code ends what it issued.
    query, verifier = await sign_in(http, client_id, analyst["email"])
    form = code_form(query, verifier)
    issued = (await exchange(http, client_id, **form)).json()
    assert await status(issued["access_token"]) == 200
    assert (await exchange(http, client_id, **form)).status_code == 400
    assert await status(issued["access_token"]) == 401

    # RFC 7009: revoking a refresh token ends the access tokens issued from it.
    assert (
        await http.post(
            "/oauth/revoke",
            data={"token": other_sign_in["refresh_token"], "client_id": client_id},
        )
    ).status_code == 200
    assert await status(other_sign_in["access_token"]) == 401

    # Narrowing a user's limits ends their sessions: no token keeps the old limits.
    current = await user_tokens(http, client_id, analyst["email"])
    assert await status(current["access_token"]) == 200
    narrowed = await http.patch(
        f"/v1/users/{analyst['id']}",
        json={"limits": {"marketplaces": ["MX"]}},
        headers=admin.headers,
    )
    assert narrowed.status_code == 200, narrowed.text
    assert await status(current["access_token"]) == 401
    # A new sign-in carries the new limits.
    assert (
        await status((await user_tokens(http, client_id, analyst["email"]))["access_token"]) == 200
    )


async def test_a_refresh_racing_a_change_of_the_user_keeps_no_old_rights(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A refresh at the very moment the user's limits change, or the user is disabled or
    deleted, either mints from the new user or is ended with the old sign-in: never a
    token with the old rights that outlives the change (nor a 500 on a deletion)."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    params = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}

    async def refresh_beside(change: Any, tokens: dict[str, Any]) -> tuple[httpx.Response, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        refreshed, changed = await asyncio.gather(exchange(http, client_id, **form), change)
        return refreshed, changed

    async def still_works(refreshed: httpx.Response) -> bool:
        if refreshed.status_code != 200:
            return False
        bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        answer = await http.get("/v1/kpis", params=params, headers=bearer)
        return answer.status_code == 200

    analyst = await add_user(http, admin, "analyst", limits={"stores": ["s1"]})
    user = f"/v1/users/{analyst['id']}"
    for round_ in range(6):
        store = f"s{round_ + 2}"
        tokens = await user_tokens(http, client_id, analyst["email"])
        patch = http.patch(user, json={"limits": {"stores": [store]}}, headers=admin.headers)
        refreshed, changed = await refresh_beside(patch, tokens)
        assert changed.status_code == 200, changed.text
        if await still_works(refreshed):
            limits = claims_of(refreshed.json()["access_token"])["limits"]
            assert limits == {"stores": [store]}, round_
    for round_ in range(4):
        viewer = await add_user(http, admin, "viewer")
        tokens = await user_tokens(http, client_id, viewer["email"])
        user = f"/v1/users/{viewer['id']}"
        if round_ % 2:
            change = http.delete(user, headers=admin.headers)
        else:
            change = http.patch(user, json={"disabled": True}, headers=admin.headers)
        refreshed, changed = await refresh_beside(change, tokens)
        assert changed.status_code in (200, 204), changed.text
        assert not await still_works(refreshed), round_


async def test_a_sign_out_racing_a_change_of_the_user_is_never_a_server_fault(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A revocation, a refresh and a change of the user at once revoke the same tokens:
    each is revoked once, in one order, and every request answers (no duplicate key, no
    deadlock); a sign-in whose user is deleted meanwhile is refused, not a 500."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    analyst = await add_user(http, admin, "analyst")
    statuses: list[tuple[int, ...]] = []
    for round_ in range(8):
        tokens = await user_tokens(http, client_id, analyst["email"])
        for _ in range(2):
            form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
            tokens = (await exchange(http, client_id, **form)).json()
        answers = await asyncio.gather(
            http.patch(
                f"/v1/users/{analyst['id']}",
                json={"limits": {"stores": [f"s{round_}"]}},
                headers=admin.headers,
            ),
            http.post(
                "/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}
            ),
            exchange(
                http, client_id, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
            ),
        )
        statuses.append(tuple(answer.status_code for answer in answers))
    assert all(
        patch == revoke == 200 and refresh in (200, 400) for patch, revoke, refresh in statuses
    ), statuses
    for _ in range(3):
        viewer = await add_user(http, admin, "viewer")
        _, challenge = pkce()
        params = authorize_params(client_id, challenge)
        form = {**params, "email": viewer["email"], "password": PASSWORD}

        async def delete_soon(user_id: str) -> httpx.Response:
            await asyncio.sleep(0.05)
            return await http.delete(f"/v1/users/{user_id}", headers=admin.headers)

        signed, deleted = await asyncio.gather(
            http.post("/oauth/authorize", data=form), delete_soon(viewer["id"])
        )
        assert deleted.status_code == 204, deleted.text
        assert signed.status_code in (303, 401), signed.text
    # A change and deletions of one user at once go one after the other: the later
    # find it gone (404), never a 500 or a second 204.
    for _ in range(3):
        viewer = await add_user(http, admin, "viewer")
        user = f"/v1/users/{viewer['id']}"
        changed, *deletions = await asyncio.gather(
            http.patch(user, json={"disabled": True}, headers=admin.headers),
            *(http.delete(user, headers=admin.headers) for _ in range(3)),
        )
        assert changed.status_code in (200, 404), changed.text
        assert sorted(d.status_code for d in deletions) == [204, 404, 404]


async def test_rows_of_expired_tokens_are_forgotten(stack: Stack) -> None:
    db = stack.apps["gateway"].state.db
    now = datetime.now(UTC)
    tag = secrets.token_hex(4)
    async with db.session() as session:
        for when, name in ((now - timedelta(seconds=1), "old"), (now + timedelta(hours=1), "live")):
            session.add(RevokedAccessToken(jti=f"{name}-{tag}", tenant_id=None, expires_at=when))
            session.add(
                IssuedAccessToken(
                    jti=f"{name}-{tag}", family_id=tag, tenant_id=None, expires_at=when
                )
            )
    await RevokedTokens(db).forget_expired()
    async with db.session() as session:
        for table in (RevokedAccessToken, IssuedAccessToken):
            kept = (
                await session.execute(select(table.jti).where(col(table.jti).contains(tag)))
            ).scalars()
            assert sorted(kept) == [f"live-{tag}"], table


async def test_a_revoked_token_gets_no_remembered_graphql_answer(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    token = await fetch_token(http, tenant.client_id, tenant.client_secret)
    bearer = {"Authorization": f"Bearer {token}"}
    query = {
        "query": '{ kpis(input: {metrics: ["gmv"], from: "2026-03-01", to: "2026-03-02", '
        "grain: TOTAL}) { rows { values { value } } } }"
    }
    first = await http.post("/graphql", json=query, headers=bearer)
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    # Asked again, it is answered from the gateway's memory (metrics says 304).
    hits = MEMORY.hits
    again = await http.post("/graphql", json=query, headers=bearer)
    assert again.json() == first.json() and MEMORY.hits == hits + 1

    revoked = await http.post(
        "/oauth/revoke", data={"token": token}, auth=(tenant.client_id, tenant.client_secret)
    )
    assert revoked.status_code == 200
    refused = await http.post("/graphql", json=query, headers=bearer)
    assert refused.status_code == 401, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_address_is_a_users_within_its_tenant_only(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """One tenant learns nothing of another's users from a 409, and one person may be a
    user of two tenants (a seller's and its agency's), signing in to each apart."""
    seller, agency = await new_tenant(), await new_tenant()
    both = {"email": "Ana@Example.com", "name": "Ana", "password": PASSWORD}
    as_seller = await http.post(
        "/v1/users", json={**both, "role": "analyst"}, headers=seller.headers
    )
    as_agency = await http.post("/v1/users", json={**both, "role": "owner"}, headers=agency.headers)
    assert (as_seller.status_code, as_agency.status_code) == (201, 201), as_agency.text
    again = await http.post(
        "/v1/users",
        json={**both, "email": "ana@example.com", "role": "viewer"},
        headers=seller.headers,
    )
    assert again.status_code == 409, again.text
    for admin, user in ((seller, as_seller.json()), (agency, as_agency.json())):
        tokens = await user_tokens(http, await frontend_client(http, admin), "ana@example.com")
        claims = claims_of(tokens["access_token"])
        assert (claims["sub"], claims["tenant"]) == (user["id"], admin.tenant_id)


async def test_one_mailbox_added_twice_at_once_is_one_user_and_one_409(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A double click on "Add user" sends two requests that each found no such user
    before either stored one: the second is a 409, never a 500."""
    admin = await new_tenant()
    spellings = ["carol@example.com", "CAROL@example.com", "Carol@Example.com", "carol@EXAMPLE.COM"]
    answers = await asyncio.gather(
        *(
            http.post(
                "/v1/users",
                json={"email": email, "name": "Carol", "password": PASSWORD, "role": "viewer"},
                headers=admin.headers,
            )
            for email in spellings
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    listed = await http.get("/v1/users", headers=admin.headers)
    assert [u["email"] for u in listed.json()["users"]] == ["carol@example.com"]


async def test_a_patch_of_nulls_or_of_the_same_values_changes_and_ends_nothing(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A frontend sending the whole user back, untouched fields as they were or null,
    must neither sign the user out nor widen a limited user to the whole tenant."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    viewer = await add_user(http, admin, "viewer", limits={"stores": ["s1"]})
    tokens = await user_tokens(http, client_id, viewer["email"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    user = f"/v1/users/{viewer['id']}"
    nulls = await http.patch(
        user, json={"name": "New", "role": None, "disabled": None}, headers=admin.headers
    )
    assert nulls.status_code == 422
    assert nulls.json()["errors"] == [
        {"field": "role", "reason": "cannot be null; leave it out to keep it"},
        {"field": "disabled", "reason": "cannot be null; leave it out to keep it"},
    ]
    # A bad value is named as the field, once, not as a union's branches.
    wrong = await http.patch(user, json={"role": "boss", "disabled": 1}, headers=admin.headers)
    assert [e["field"] for e in wrong.json()["errors"]] == ["role", "disabled"], wrong.text
    same = await http.patch(
        user,
        json={"name": "Renamed", "role": "viewer", "limits": {"stores": ["s1"]}, "disabled": False},
        headers=admin.headers,
    )
    assert same.status_code == 200, same.text
    assert (same.json()["name"], same.json()["limits"]) == ("Renamed", {"stores": ["s1"]})
    assert (await http.get("/v1/kpis/catalog", headers=bearer)).status_code == 200
    # A real change still ends the sessions at once.
    changed = await http.patch(user, json={"role": "analyst"}, headers=admin.headers)
    assert changed.status_code == 200
    assert (await http.get("/v1/kpis/catalog", headers=bearer)).status_code == 401


async def test_a_refusal_due_to_a_users_own_limits_says_so(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Account health has no category: a user limited to categories who asked for no
    category at all must learn that the filter is its limit."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    limited = await add_user(http, admin, "viewer", limits={"categories": ["Lamps"]})
    tokens = await user_tokens(http, client_id, limited["email"])
    params = {
        "metrics": "late_shipment_rate",
        "from": "2026-03-01",
        "to": "2026-03-31",
        "grain": "total",
    }
    answered = await http.get(
        "/v1/kpis", params=params, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["rows"][0]["values"][0]["value"] is None
    assert answered.json()["warnings"] == [
        "late_shipment_rate is not available by category: its values are null "
        "(this caller is limited to some categories)"
    ]
    # The group of lines without a category is outside too, and named as a value.
    uncategorized = await http.get(
        "/v1/kpis",
        params={**params, "metrics": "gmv", "categories": '""'},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert uncategorized.status_code == 403, uncategorized.text
    assert uncategorized.json()["detail"] == (
        f'no access to category "" of tenant {admin.tenant_id}'
    )


async def test_an_address_that_failed_ten_times_in_a_row_rests_before_signing_in(
    http: httpx.AsyncClient, pg: asyncpg.Connection, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    guessed, other = "guessed@example.com", "other@example.com"
    for email in (guessed, other):
        await add_user(http, admin, "viewer", email=email)
    _, challenge = pkce()
    params = authorize_params(client_id, challenge)

    async def attempt(email: str, password: str) -> httpx.Response:
        return await http.post(
            "/oauth/authorize", data={**params, "email": email, "password": password}
        )

    for _ in range(MAX_FAILURES):
        assert (await attempt(guessed, "not the password")).status_code == 401
    # Even the right password waits now, and the page says for how long.
    paused = await attempt(guessed.upper(), PASSWORD)
    assert paused.status_code == 429, paused.text
    assert 0 < int(paused.headers["retry-after"]) <= PAUSE.total_seconds()
    assert "Too many failed sign-ins for this address: try again in 15 minutes" in paused.text
    # Another address of the tenant signs in as before.
    await sign_in(http, client_id, other)
    # An address no one has rests the same way, so the pause tells of no account.
    for _ in range(MAX_FAILURES):
        assert (await attempt("nobody@example.com", "not the password")).status_code == 401
    assert (await attempt("nobody@example.com", PASSWORD)).status_code == 429
    # Once the pause is over, the right password signs in and the failures are forgotten.
    await pg.execute(
        "UPDATE gateway.sign_in_failures SET last_failed_at = now() - $1::interval "
        "WHERE tenant_id = $2 AND email = $3",
        PAUSE,
        admin.tenant_id,
        guessed,
    )
    await sign_in(http, client_id, guessed)
    left = await pg.fetchval(
        "SELECT count(*) FROM gateway.sign_in_failures WHERE tenant_id = $1 AND email = $2",
        admin.tenant_id,
        guessed,
    )
    assert left == 0


async def test_password_checks_run_one_at_a_time_and_a_crowd_is_told_to_retry(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each check takes 64 MiB and four threads: sign-ins sent fast with made-up
    addresses slowed every tenant's requests tenfold."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    _, challenge = pkce()
    params = authorize_params(client_id, challenge)
    monkeypatch.setattr(passwords, "SIGN_IN_WAIT_SECONDS", 0.0)
    answers = await asyncio.gather(
        *(
            http.post(
                "/oauth/authorize",
                data={**params, "email": f"guess-{n}@example.com", "password": "x" * 12},
            )
            for n in range(6)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    busy = next(a for a in answers if a.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert "Too many sign-ins at this moment: try again in a second." in busy.text


async def test_one_address_holds_two_places_in_the_line_of_password_checks() -> None:
    """Made-up sign-ins sent fast from one address took every turn, and other
    tenants' users waited, or were told to retry."""
    flood = [passwords.verify_password("x" * 12, None, "203.0.113.9") for _ in range(5)]
    other = passwords.verify_password("x" * 12, None, "198.51.100.7")
    *flooded, answered = await asyncio.gather(*flood, other, return_exceptions=True)
    assert answered is False
    # Two places an address, so two people behind one office's address both pass.
    assert flooded.count(False) == passwords.PLACES_PER_ADDRESS == 2
    assert sum(isinstance(r, passwords.SignInsBusy) for r in flooded) == 3
    # Its turn over, the address is heard again.
    assert await passwords.verify_password("x" * 12, None, "203.0.113.9") is False


async def test_sign_in_failures_of_no_one_are_neither_kept_nor_a_500(
    http: httpx.AsyncClient, pg: asyncpg.Connection, stack: Stack, new_tenant: NewTenant
) -> None:
    """Made-up addresses never sign in: their counts went only when the gateway was
    told so, and a megabyte address broke the index (a 500 with the address logged)."""
    admin = await new_tenant()
    client_id = await frontend_client(http, admin)
    _, challenge = pkce()
    params = authorize_params(client_id, challenge)
    for length in (300, 60_000):
        email = "a" * length + "@example.com"
        answer = await http.post(
            "/oauth/authorize", data={**params, "email": email, "password": "x" * 12}
        )
        assert answer.status_code == 400, answer.text[:300]
        assert "An e-mail address has at most 254 characters." in answer.text
    # A megabyte is no sign-in form at all: the OAuth endpoints take 64 KiB.
    huge = await http.post(
        "/oauth/authorize", data={**params, "email": "a" * 1_000_000, "password": "x" * 12}
    )
    assert huge.status_code == 413, huge.text[:300]
    made_up = await http.post(
        "/oauth/authorize", data={**params, "email": "made-up@example.com", "password": "x" * 12}
    )
    assert made_up.status_code == 401
    counted = "SELECT count(*) FROM gateway.sign_in_failures WHERE tenant_id = $1"
    assert await pg.fetchval(counted, admin.tenant_id) == 1
    # A pause later the count is no use (the next failure counts from one): forgotten.
    await pg.execute(
        "UPDATE gateway.sign_in_failures SET last_failed_at = now() - $1::interval "
        "WHERE tenant_id = $2",
        PAUSE,
        admin.tenant_id,
    )
    await stack.apps["gateway"].state.revoked_tokens.forget_expired()
    assert await pg.fetchval(counted, admin.tenant_id) == 0


def full_width(ascii_text: str) -> str:
    """As a Chinese input method types Latin letters and signs."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


async def test_a_mailbox_is_one_user_however_its_address_is_typed(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An internationalised domain in Unicode or in its ASCII form, and letters typed
    full-width by a Chinese input method, name one mailbox: one user, one sign-in."""
    admin = await new_tenant()
    user = {"name": "王", "password": PASSWORD, "role": "analyst"}
    created = await http.post(
        "/v1/users", json={**user, "email": "Wang@深圳科技.中国"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "wang@深圳科技.中国"
    for same in (
        "wang@xn--fesw6x98iq2l.xn--fiqs8s",
        full_width("wang@") + "深圳科技" + full_width(".") + "中国",
    ):
        again = await http.post("/v1/users", json={**user, "email": same}, headers=admin.headers)
        assert again.status_code == 409, (same, again.text)
    wide = await http.post(
        "/v1/users",
        json={**user, "email": "zhang@" + full_width("EXAMPLE") + ".com"},
        headers=admin.headers,
    )
    assert wide.status_code == 201 and wide.json()["email"] == "zhang@example.com", wide.text
    client_id = await frontend_client(http, admin)
    for typed, created_user in (
        ("wang@xn--fesw6x98iq2l.xn--fiqs8s", created.json()),
        ("WANG@深圳科技.中国", created.json()),
        ("zhang@example.com", wide.json()),
    ):
        tokens = await user_tokens(http, client_id, typed)
        assert claims_of(tokens["access_token"])["sub"] == created_user["id"], typed
    # Still an address only with an at sign.
    refused = await http.post(
        "/v1/users", json={**user, "email": "wang深圳科技.中国"}, headers=admin.headers
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "email"


def test_users_added_before_addresses_were_canonical_are_found_by_either_spelling() -> None:
    # Kept lower-cased as typed, the domain maybe in its ASCII form.
    assert stored_spellings("WANG@深圳科技.中国") == [
        "wang@深圳科技.中国",
        "wang@xn--fesw6x98iq2l.xn--fiqs8s",
    ]
    assert stored_spellings("Bob@Example.com") == ["bob@example.com"]
    # A domain IDNA refuses is compared as typed, folded; no at sign, no second spelling.
    assert stored_spellings("a@under_score.com") == ["a@under_score.com"]
    assert stored_spellings("no-at-sign") == ["no-at-sign"]


def test_the_revoked_list_works_out_each_digest_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service reads the whole list every second, and a tenant may revoke many
    tokens: hashing each id on every read made each answer dearer as the list grew."""
    worked_out: list[str] = []

    def counted(revoked_id: str) -> str:
        worked_out.append(revoked_id)
        return revocation_digest(revoked_id)

    monkeypatch.setattr("services.gateway.oauth.revoked.revocation_digest", counted)
    revoked = RevokedTokens(db=None)  # type: ignore[arg-type]
    later = datetime.now(UTC) + timedelta(minutes=5)
    for n in range(3):
        revoked.add(f"jti-{n}", later)
    revoked.add("gone", datetime.now(UTC) - timedelta(seconds=1))
    expected = [revocation_digest(f"jti-{n}") for n in range(3)]
    assert revoked.digests() == expected and revoked.digests() == expected
    assert sorted(worked_out) == ["jti-0", "jti-1", "jti-2"]


async def test_a_reload_of_revocations_keeps_one_made_while_it_read(stack: Stack) -> None:
    """A revocation this gateway made while the reload read the rows (its commit after
    the read) was forgotten until the next reload, ten seconds on."""
    revoked: RevokedTokens = stack.apps["gateway"].state.revoked_tokens
    jti = f"made-while-reloading-{secrets.token_hex(4)}"
    revoked.add(jti, datetime.now(UTC) + timedelta(minutes=5))
    await revoked.load()
    assert jti in revoked
