"""Every way a token is refused at a real route, and the scope check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import NewTenant, Stack, TenantClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def gateway_key(stack: Stack) -> RSAKey:
    """The gateway's real signing key (stored sealed), to forge tokens that differ in one
    claim only."""
    key: RSAKey = stack.apps["gateway"].state.signer.current
    return key


def _claims(stack: Stack, tenant: TenantClient, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": stack.gateway,
        "sub": tenant.client_id,
        "aud": "lodestar",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "forged",
        "client_id": tenant.client_id,
        "scope": "tenant:admin kpi:read targets:read ingest:write",
        "tenant": tenant.tenant_id,
    }
    claims.update(overrides)
    return claims


def _sign(key: RSAKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": key.kid, **header},
        claims,
        key,
        algorithms=["RS256"],
    )


async def _status(http: httpx.AsyncClient, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await http.get(path, headers=headers)


ROUTES = ["/v1/tenants/{tenant}", "/v1/targets/plans", "/v1/kpis/catalog", "/v1/events/outbox"]


@pytest.mark.parametrize("route", ROUTES)
async def test_forged_and_stale_tokens_get_401_everywhere(
    http: httpx.AsyncClient, new_tenant: NewTenant, stack: Stack, gateway_key: RSAKey, route: str
) -> None:
    tenant = await new_tenant()
    path = route.format(tenant=tenant.tenant_id)
    good = _claims(stack, tenant)
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": gateway_key.kid}).encode())
    alg_none = f"{header}.{_b64(json.dumps(good).encode())}."
    hs_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": gateway_key.kid}).encode())
        + "."
        + _b64(json.dumps(good).encode())
    )
    hs256 = (
        hs_input
        + "."
        + _b64(
            hmac.new(gateway_key.as_pem(private=False), hs_input.encode(), hashlib.sha256).digest()
        )
    )
    signed = _sign(gateway_key, good)
    head, _, signature = signed.split(".")
    tampered = (
        f"{head}.{_b64(json.dumps({**good, 'scope': 'platform:admin'}).encode())}.{signature}"
    )
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-ours"})
    cases = {
        "missing": None,
        "garbage": "abc.def",
        "alg none": alg_none,
        "HS256 with the public key": hs256,
        "another issuer": _sign(gateway_key, {**good, "iss": "https://evil.example"}),
        "wrong audience": _sign(gateway_key, {**good, "aud": "other-api"}),
        "expired": _sign(gateway_key, {**good, "exp": int(time.time()) - 600}),
        "not yet valid": _sign(gateway_key, {**good, "nbf": int(time.time()) + 600}),
        "tampered payload": tampered,
        "unknown key": _sign(stranger, good),
        "wrong type": _sign(gateway_key, good, typ="JWT"),
    }
    # The real token works, so each refusal below is about the one thing changed.
    assert (await _status(http, path, signed)).status_code == 200
    for name, token in cases.items():
        response = await _status(http, path, token)
        assert response.status_code == 401, (name, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"'), name
        assert response.json()["error"] == "invalid_token", name


@pytest.mark.parametrize(
    ("route", "scope"),
    [
        ("/v1/targets/plans", "targets:read"),
        ("/v1/kpis/catalog", "kpi:read"),
        ("/v1/events/outbox", "ingest:write"),
        ("/v1/tenants", "platform:admin"),
    ],
)
async def test_missing_scope_is_403_naming_it(
    http: httpx.AsyncClient, new_tenant: NewTenant, route: str, scope: str
) -> None:
    tenant = await new_tenant(scopes=["connections:manage"])
    response = await http.get(route, headers=tenant.headers)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert scope in response.json()["detail"]
    assert f'scope="{scope}"' in response.headers["www-authenticate"]
