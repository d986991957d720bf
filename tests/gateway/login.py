"""Signing users in as a frontend does: a public client, the sign-in page, PKCE."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from shared.scopes import TENANT_SCOPES
from tests.conftest import TenantClient

REDIRECT = "http://localhost:5173/callback"
PASSWORD = "correct horse battery"


def _decoded_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def claims_of(token: str) -> dict[str, Any]:
    return _decoded_part(token, 1)


def header_of(token: str) -> dict[str, Any]:
    return _decoded_part(token, 0)


def refusal_of(answer: httpx.Response) -> dict[str, list[str]]:
    """The error a refused authorization request's page links back to the client with:
    the page shows it, and does not send the browser there by itself."""
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    link = re.search(r'<a href="([^"]+)">Back to the application</a>', answer.text)
    assert link is not None, answer.text
    way_back = urlsplit(html.unescape(link.group(1)))
    assert f"{way_back.scheme}://{way_back.netloc}{way_back.path}" == REDIRECT
    return parse_qs(way_back.query)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


async def frontend_client(http: httpx.AsyncClient, admin: TenantClient) -> str:
    response = await http.post(
        f"/v1/tenants/{admin.tenant_id}/clients",
        json={
            "name": "dashboard",
            "scopes": list(TENANT_SCOPES),
            "public": True,
            "redirect_uris": [REDIRECT],
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["client_secret"] is None
    client_id: str = response.json()["client_id"]
    return client_id


async def add_user(
    http: httpx.AsyncClient, admin: TenantClient, role: str, **extra: Any
) -> dict[str, Any]:
    response = await http.post(
        "/v1/users",
        json={
            "email": f"{role}-{secrets.token_hex(4)}@example.com",
            "name": role.title(),
            "password": PASSWORD,
            "role": role,
            **extra,
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def authorize_params(client_id: str, challenge: str) -> dict[str, str]:
    """The query of a valid authorization request."""
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "kpi:read ingest:write",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


async def sign_in(
    http: httpx.AsyncClient,
    client_id: str,
    email: str,
    password: str = PASSWORD,
    scope: str = "",
) -> tuple[dict[str, list[str]], str]:
    """Signs in on the page; the redirect's query and the PKCE verifier."""
    verifier, challenge = pkce()
    params = authorize_params(client_id, challenge)
    if scope:
        params["scope"] = scope
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "<form" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    posted = await http.post(
        "/oauth/authorize", data={**params, "email": email, "password": password}
    )
    assert posted.status_code == 303, posted.text
    location = posted.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query), verifier


def code_form(query: dict[str, list[str]], verifier: str) -> dict[str, str]:
    """The token request that redeems the code of a sign-in's redirect."""
    return {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }


async def exchange(http: httpx.AsyncClient, client_id: str, **form: str) -> httpx.Response:
    return await http.post("/oauth/token", data={"client_id": client_id, **form})


async def user_tokens(
    http: httpx.AsyncClient, client_id: str, email: str, scope: str = ""
) -> dict[str, Any]:
    """The token answer of a whole sign-in: page, code, exchange."""
    query, verifier = await sign_in(http, client_id, email, scope=scope)
    response = await exchange(http, client_id, **code_form(query, verifier))
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens
