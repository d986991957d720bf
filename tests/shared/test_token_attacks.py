"""Token attacks at a protected route of every service (issue 5).

A genuine token from the running gateway must work on each route; every forged,
stale or malformed variant of it must get 401 ``invalid_token`` there, with the shared
error body and nothing more, and a genuine token without the route's scope 403
naming it. The unit tests at the end pin which check of :class:`TokenVerifier`
refuses each bad claim, with a key of the test's own behind a ``KeyCache``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from shared.auth import CLOCK_LEEWAY_SECONDS, KeyCache, TokenVerifier
from shared.errors import Unauthenticated
from tests.conftest import Stack, fetch_token

# The routes need these four; kpi:read and ingest:write are the ones the issue names.
GRANTED = ("kpi:read", "ingest:write", "targets:read", "tenant:admin")
ERROR_BODY_KEYS = {"error", "detail", "errors"}


@dataclass(frozen=True)
class Route:
    service: str
    path: str
    scope: str


# GET routes that need only a token, so an answer other than 401 means it was let in.
ROUTES: dict[str, Route] = {
    "gateway": Route("gateway", "/v1/tenants/{tenant}", "tenant:admin"),
    "ingest": Route("ingest", "/v1/events/outbox", "ingest:write"),
    "metrics": Route("metrics", "/v1/kpis/catalog", "kpi:read"),
    "targets": Route("targets", "/v1/targets/plans", "targets:read"),
    # The same routes through the gateway's proxy: the 401 and its header must survive it.
    "ingest-via-gateway": Route("gateway", "/v1/events/outbox", "ingest:write"),
    "metrics-via-gateway": Route("gateway", "/v1/kpis/catalog", "kpi:read"),
    "targets-via-gateway": Route("gateway", "/v1/targets/plans", "targets:read"),
}
CATALOG_QUERY = "{ kpiCatalog { id } }"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


def _claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


def _sign(key: RSAKey, claims: dict[str, Any], **header: Any) -> str:
    head = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid, **header}
    return jwt.encode({k: v for k, v in head.items() if v is not None}, claims, key, ["RS256"])


@cache
def _stranger_key(kid: str) -> RSAKey:
    """An RSA key the services have never seen (generated once per kid)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)


@dataclass(frozen=True)
class Genuine:
    """A real token of a real tenant client, and what an attacker or the test needs."""

    tenant_id: str
    client_id: str
    client_secret: str
    token: str
    public_key: RSAKey  # from the gateway's JWKS, as any attacker can fetch it
    signing_key: RSAKey  # the gateway's private key, to change one claim and sign validly

    @property
    def kid(self) -> str:
        return str(self.public_key.kid)

    @property
    def claims(self) -> dict[str, Any]:
        return _claims_of(self.token)

    def resigned(
        self, drop: tuple[str, ...] = (), header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        body = {k: v for k, v in {**self.claims, **claims}.items() if k not in drop}
        return _sign(self.signing_key, body, **(header or {}))

    def with_header(self, header: dict[str, Any], signature: str | None = None) -> str:
        _, payload, real_signature = self.token.split(".")
        return f"{_segment(header)}.{payload}.{real_signature if signature is None else signature}"

    def with_payload(self, **claims: Any) -> str:
        head, _, signature = self.token.split(".")
        return f"{head}.{_segment({**self.claims, **claims})}.{signature}"


def _gateway_private_key(stack: Stack, kid: str) -> RSAKey:
    """The gateway's own key (stored sealed), as it signs with it."""
    keys = {str(key.kid): key for key in stack.apps["gateway"].state.signer.keys}
    return keys[kid]


@pytest.fixture(scope="module")
async def genuine(stack: Stack, database_url: str) -> Genuine:
    """One tenant, client and token for the whole module (``new_tenant`` is per test)."""
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30.0) as http:
        admin = await fetch_token(
            http, stack.config.admin.client_id, stack.config.admin.client_secret
        )
        auth = {"Authorization": f"Bearer {admin}"}
        response = await http.post(
            "/v1/tenants",
            json={"name": f"attacked-{secrets.token_hex(3)}", "reporting_currency": "USD"},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        tenant_id = response.json()["id"]
        response = await http.post(
            f"/v1/tenants/{tenant_id}/clients",
            json={"name": "attacked client", "scopes": list(GRANTED)},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        client = response.json()
        token = await fetch_token(
            http, client["client_id"], client["client_secret"], scope=" ".join(GRANTED)
        )
        jwks = (await http.get("/.well-known/jwks.json")).json()
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    public = next(key for key in KeySet.import_key_set(jwks).keys if key.kid == kid)
    assert isinstance(public, RSAKey) and not public.is_private
    return Genuine(
        tenant_id=tenant_id,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        token=token,
        public_key=public,
        signing_key=_gateway_private_key(stack, kid),
    )


@pytest.fixture(scope="module")
async def clients(stack: Stack) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client per service, reused by every case."""
    opened = {
        service: httpx.AsyncClient(base_url=stack.url(service), timeout=30.0)
        for service in ("gateway", "ingest", "metrics", "targets")
    }
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.aclose()


def _hs256_with_public_key(g: Genuine) -> str:
    # The classic key confusion: a verifier that lets the header pick the algorithm
    # would take the published RSA key as an HMAC secret.
    signing_input = (
        f"{_segment({'alg': 'HS256', 'typ': 'at+jwt', 'kid': g.kid})}.{g.token.split('.')[1]}"
    )
    pem = g.public_key.as_pem(private=False)
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _none(g: Genuine, alg: str = "none", keep_signature: bool = False) -> str:
    header = {"alg": alg, "typ": "at+jwt", "kid": g.kid}
    return g.with_header(header, signature=None if keep_signature else "")


def _embedded_jwk(g: Genuine) -> str:
    # CVE-2018-0114 shape: the header carries the attacker's own public key.
    stranger = _stranger_key(g.kid)
    public = stranger.as_dict(private=False)
    return _sign(stranger, g.claims, jwk=public)


def _jku(g: Genuine) -> str:
    # A key-set URL of the attacker's; nothing listens there, and nothing may ask it.
    stranger = _stranger_key("attacker")
    return _sign(stranger, g.claims, jku="http://127.0.0.1:9/jwks.json")


Attack = Callable[[Genuine], str | None]
"""Turns the genuine token into the Authorization header value to send (None: no header)."""

ATTACKS: dict[str, Attack] = {
    "alg-none-empty-signature": lambda g: f"Bearer {_none(g)}",
    "alg-none-signature-kept": lambda g: f"Bearer {_none(g, keep_signature=True)}",
    "alg-None-capitalised": lambda g: f"Bearer {_none(g, alg='None')}",
    "alg-none-no-signature-segment": lambda g: f"Bearer {_none(g).rstrip('.')}",
    "hs256-signed-with-public-key": lambda g: f"Bearer {_hs256_with_public_key(g)}",
    "other-key-same-kid": lambda g: f"Bearer {_sign(_stranger_key(g.kid), g.claims)}",
    "other-key-unknown-kid": lambda g: f"Bearer {_sign(_stranger_key('attacker'), g.claims)}",
    "other-key-embedded-jwk": lambda g: f"Bearer {_embedded_jwk(g)}",
    "other-key-jku-header": lambda g: f"Bearer {_jku(g)}",
    "no-kid": lambda g: f"Bearer {g.resigned(header={'kid': None})}",
    "other-issuer": lambda g: f"Bearer {g.resigned(iss='https://evil.example')}",
    "other-audience": lambda g: f"Bearer {g.resigned(aud='someone-else')}",
    "expired": lambda g: f"Bearer {g.resigned(exp=int(time.time()) - 1)}",
    "not-yet-valid": lambda g: f"Bearer {g.resigned(nbf=int(time.time()) + 600)}",
    "no-jti": lambda g: f"Bearer {g.resigned(drop=('jti',))}",
    "no-sub": lambda g: f"Bearer {g.resigned(drop=('sub',))}",
    "no-client-id": lambda g: f"Bearer {g.resigned(drop=('client_id',))}",
    "typ-jwt-id-token-shape": lambda g: f"Bearer {g.resigned(header={'typ': 'JWT'})}",
    "no-typ": lambda g: f"Bearer {g.resigned(header={'typ': None})}",
    "tampered-tenant": lambda g: f"Bearer {g.with_payload(tenant='someone-else')}",
    "tampered-scope": lambda g: (
        f"Bearer {g.with_payload(scope='platform:admin ' + g.claims['scope'])}"
    ),
    "tampered-expiry": lambda g: f"Bearer {g.with_payload(exp=g.claims['exp'] + 86400)}",
    "truncated-signature": lambda g: f"Bearer {g.token[:-12]}",
    "signature-dropped": lambda g: f"Bearer {g.token.rsplit('.', 1)[0]}",
    "header-only": lambda g: f"Bearer {g.token.split('.')[0]}",
    "garbage": lambda g: "Bearer not-a-token",
    "garbage-three-segments": lambda g: "Bearer a.b.c",
    "missing-bearer-scheme": lambda g: g.token,
    "basic-scheme": lambda g: f"Basic {g.token}",
    "empty-token": lambda g: "Bearer",
    "no-authorization-header": lambda g: None,
}


def _headers(authorization: str | None) -> dict[str, str]:
    return {} if authorization is None else {"Authorization": authorization}


async def _call(
    clients: dict[str, httpx.AsyncClient], route: Route, g: Genuine, authorization: str | None
) -> httpx.Response:
    client = clients[route.service]
    return await client.get(route.path.format(tenant=g.tenant_id), headers=_headers(authorization))


async def _graphql(
    clients: dict[str, httpx.AsyncClient], authorization: str | None, status: int = 200
) -> dict[str, Any]:
    response = await clients["gateway"].post(
        "/graphql", json={"query": CATALOG_QUERY}, headers=_headers(authorization)
    )
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    if status == 403:
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="kpi:read"'
        )
    body: dict[str, Any] = response.json()
    return body


def _assert_leaks_nothing(text: str, authorization: str | None) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text
    # The answer never echoes the token, or any part of it, back.
    for segment in (authorization or "").rpartition(" ")[2].split("."):
        if len(segment) >= 16:
            assert segment not in text


@pytest.mark.parametrize("route_name", list(ROUTES))
async def test_genuine_token_is_accepted(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine, route_name: str
) -> None:
    response = await _call(clients, ROUTES[route_name], genuine, f"Bearer {genuine.token}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("route_name", list(ROUTES))
async def test_forged_token_is_refused_with_invalid_token(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine, route_name: str, attack: str
) -> None:
    authorization = ATTACKS[attack](genuine)
    response = await _call(clients, ROUTES[route_name], genuine, authorization)
    assert response.status_code == 401, response.text
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    assert 'error="invalid_token"' in challenge
    body = response.json()
    assert body["error"] == "invalid_token"
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= ERROR_BODY_KEYS
    _assert_leaks_nothing(response.text, authorization)


@pytest.mark.parametrize("route_name", list(ROUTES))
async def test_genuine_token_without_the_route_scope_gets_403_naming_it(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine, route_name: str
) -> None:
    route = ROUTES[route_name]
    others = " ".join(scope for scope in GRANTED if scope != route.scope)
    token = await fetch_token(clients["gateway"], genuine.client_id, genuine.client_secret, others)
    assert route.scope not in _claims_of(token)["scope"].split()
    response = await _call(clients, route, genuine, f"Bearer {token}")
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge == f'Bearer error="insufficient_scope", scope="{route.scope}"'
    body = response.json()
    assert body["error"] == "insufficient_scope"
    assert route.scope in body["detail"]
    _assert_leaks_nothing(response.text, None)


async def test_genuine_token_reads_the_catalog_over_graphql(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine
) -> None:
    body = await _graphql(clients, f"Bearer {genuine.token}")
    assert "errors" not in body, body
    assert {"id": "gmv"} in body["data"]["kpiCatalog"]


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_token_is_unauthenticated_over_graphql(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine, attack: str
) -> None:
    authorization = ATTACKS[attack](genuine)
    body = await _graphql(clients, authorization, status=401)
    assert "data" not in body  # refused as a whole
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["extensions"]["error"] == "invalid_token"
    _assert_leaks_nothing(json.dumps(body), authorization)


async def test_genuine_token_without_kpi_read_is_forbidden_over_graphql(
    clients: dict[str, httpx.AsyncClient], genuine: Genuine
) -> None:
    others = " ".join(scope for scope in GRANTED if scope != "kpi:read")
    token = await fetch_token(clients["gateway"], genuine.client_id, genuine.client_secret, others)
    body = await _graphql(clients, f"Bearer {token}", 403)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {
        "code": "FORBIDDEN",
        "error": "insufficient_scope",
        "scope": "kpi:read",
    }
    assert "kpi:read" in error["message"]


# The verifier itself, with a key of the test's own: each bad claim is refused by the
# check meant for it, not by an earlier one by accident.

ISSUER = "https://issuer.test"
AUDIENCE = "lodestar"


@dataclass
class OwnIssuer:
    key: RSAKey
    verifier: TokenVerifier
    fetches: list[str]

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": ISSUER,
            "sub": "client-1",
            "aud": AUDIENCE,
            "exp": now + 600,
            "iat": now,
            "jti": secrets.token_hex(8),
            "client_id": "client-1",
            "scope": "kpi:read",
            "tenant": "tenant-1",
        }

    def mint(
        self, drop: tuple[str, ...] = (), header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        body = {k: v for k, v in {**self.claims(), **claims}.items() if k not in drop}
        return _sign(self.key, body, **(header or {}))


@pytest.fixture
def own_issuer() -> OwnIssuer:
    key = _stranger_key("own-issuer")
    document = dict(KeySet([key]).as_dict(private=False))
    fetches: list[str] = []

    async def fetch(url: str) -> dict[str, Any]:
        fetches.append(url)
        return document

    verifier = TokenVerifier(KeyCache("test://jwks", fetch=fetch), ISSUER, AUDIENCE)
    return OwnIssuer(key, verifier, fetches)


async def test_own_issuer_token_passes_the_verifier(own_issuer: OwnIssuer) -> None:
    principal = await own_issuer.verifier.verify(own_issuer.mint())
    assert (principal.tenant_id, principal.client_id) == ("tenant-1", "client-1")
    assert principal.scopes == {"kpi:read"}


def _later(seconds: int) -> int:
    return int(time.time()) + seconds


CLAIM_CASES: dict[str, tuple[Callable[[OwnIssuer], str], str]] = {
    "other-issuer": (lambda o: o.mint(iss="https://evil.example"), "issuer is not trusted"),
    "no-issuer": (lambda o: o.mint(drop=("iss",)), "issuer is not trusted"),
    "other-audience": (lambda o: o.mint(aud="someone-else"), "audience is wrong"),
    "other-audiences": (lambda o: o.mint(aud=["a", "b"]), "audience is wrong"),
    "no-audience": (lambda o: o.mint(drop=("aud",)), "audience is wrong"),
    # No leeway: a token is refused from the second its exp names.
    "expired-a-moment-ago": (lambda o: o.mint(exp=_later(-1)), "has expired"),
    "expiring-now": (lambda o: o.mint(exp=_later(0)), "has expired"),
    "expiry-as-string": (lambda o: o.mint(exp=str(_later(600))), "has expired"),
    "no-expiry": (lambda o: o.mint(drop=("exp",)), "has expired"),
    # NaN and Infinity are JSON numbers to Python's parser and would never expire.
    "expiry-nan": (lambda o: o.mint(exp=float("nan")), "has expired"),
    "expiry-infinite": (lambda o: o.mint(exp=float("inf")), "has expired"),
    "expiry-as-boolean": (lambda o: o.mint(exp=True), "has expired"),
    "nbf-in-the-future": (
        lambda o: o.mint(nbf=_later(CLOCK_LEEWAY_SECONDS + 60)),
        "not valid yet",
    ),
    "iat-in-the-future-without-nbf": (
        lambda o: o.mint(iat=_later(CLOCK_LEEWAY_SECONDS + 60)),
        "not valid yet",
    ),
    "no-jti": (lambda o: o.mint(drop=("jti",)), "lacks the jti claim"),
    "no-sub": (lambda o: o.mint(drop=("sub",)), "lacks the sub claim"),
    "sub-not-a-string": (lambda o: o.mint(sub=42), "lacks the sub claim"),
    "no-client-id": (lambda o: o.mint(drop=("client_id",)), "lacks the client_id claim"),
    "typ-jwt": (lambda o: o.mint(header={"typ": "JWT"}), "type must be at+jwt"),
    "typ-absent": (lambda o: o.mint(header={"typ": None}), "type must be at+jwt"),
    "typ-id-token": (lambda o: o.mint(header={"typ": "id_token+jwt"}), "type must be at+jwt"),
}


@pytest.mark.parametrize("case", list(CLAIM_CASES))
async def test_verifier_refuses_each_bad_claim_by_its_own_check(
    own_issuer: OwnIssuer, case: str
) -> None:
    make, reason = CLAIM_CASES[case]
    with pytest.raises(Unauthenticated) as refused:
        await own_issuer.verifier.verify(make(own_issuer))
    assert reason in refused.value.detail
    assert refused.value.status == 401
    assert 'error="invalid_token"' in refused.value.headers["WWW-Authenticate"]


async def test_a_token_valid_for_a_moment_more_or_issued_a_little_ahead_is_accepted(
    own_issuer: OwnIssuer,
) -> None:
    # The boundaries of the checks above: expiry is exact, while an issuer whose clock
    # runs a few seconds ahead is forgiven.
    for token in (
        own_issuer.mint(exp=_later(5)),
        own_issuer.mint(iat=_later(CLOCK_LEEWAY_SECONDS - 5), exp=_later(600)),
    ):
        principal = await own_issuer.verifier.verify(token)
        assert principal.client_id == "client-1"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "at+jwt", "kid": "own-issuer"},
        {"alg": "HS256", "typ": "at+jwt", "kid": "own-issuer"},
        {"alg": "RS256", "typ": "JWT", "kid": "own-issuer"},
        {"alg": "RS256", "typ": "at+jwt"},
    ],
    ids=["alg-none", "alg-hs256", "typ-jwt", "no-kid"],
)
async def test_header_forgeries_are_refused_before_any_key_fetch(
    own_issuer: OwnIssuer, header: dict[str, Any]
) -> None:
    # A flood of forged tokens must not turn into JWKS requests.
    forged = f"{_segment(header)}.{_segment(own_issuer.claims())}."
    with pytest.raises(Unauthenticated):
        await own_issuer.verifier.verify(forged)
    assert own_issuer.fetches == []
