"""Access-token checks every service runs itself.

Tokens are RS256 JWTs in the RFC 9068 profile issued by the gateway. Keys come from
the gateway's JWKS, cached, and fetched again when a token names a ``kid`` the cache
does not hold (key rotation). The tenant a caller acts for always comes from the
token, never from the request body.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import httpx
import orjson
from fastapi import Request
from joserfc import jwt
from joserfc.errors import ExceededSizeError, JoseError
from joserfc.jwk import KeySet, RSAKey

from shared.errors import Forbidden, InsufficientScope, Unauthenticated, UpstreamUnavailable
from shared.lru import Lru
from shared.telemetry import current_tenant

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
# A flood of tokens with made-up key ids must not turn into a flood of JWKS fetches.
MIN_SECONDS_BETWEEN_JWKS_FETCHES = 2.0
# How often a token naming a key the gateway has not announced may have the gateway's
# keys fetched again.
UNKNOWN_KEY_FETCH_SECONDS = 0.25
# As long as the gateway lets its JWKS answer be cached: a key it retired (a rotation)
# is refused here within this time. An issuer out of reach leaves the keys held, and
# is asked again after the shorter wait.
KEYS_MAX_AGE_SECONDS = 300.0
KEYS_RETRY_SECONDS = 30.0
# A token issued by a server whose clock runs a little ahead is valid already; an
# expired one never is (CONTRACT §2: expired is 401), so expiry has no leeway.
CLOCK_LEEWAY_SECONDS = 30
VERIFIED_TOKENS = 4096
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims of the access token."""

    subject: str
    client_id: str
    tenant_id: str | None
    scopes: frozenset[str]
    token_id: str
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(scope)

    def require_tenant(self) -> str:
        if not self.tenant_id:
            raise Forbidden("this token acts for no tenant")
        return self.tenant_id


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    listed = claims.get("scp")
    if isinstance(listed, list):
        return frozenset(str(s) for s in listed)
    return frozenset()


def _unverified_issuer(token: str) -> Any:
    """Only picks whose keys verify the token; the signature is checked by those keys."""
    try:
        return _decoded_segment(token, 1).get("iss")
    except Unauthenticated:
        return None


def _unverified_header(token: str) -> dict[str, Any]:
    return _decoded_segment(token, 0)


def _decoded_segment(token: str, index: int) -> dict[str, Any]:
    try:
        segment = token.split(".")[index]
        padded = segment + "=" * (-len(segment) % 4)
        header = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, IndexError, orjson.JSONDecodeError) as exc:
        raise Unauthenticated("malformed token") from exc
    if not isinstance(header, dict):
        raise Unauthenticated("malformed token")
    return header


class KeyCache:
    """The issuer's public keys, fetched from its JWKS URL on demand."""

    def __init__(
        self, jwks_url: str, fetch: Callable[[str], Awaitable[dict[str, Any]]] | None = None
    ) -> None:
        self.jwks_url = jwks_url
        self._fetch = fetch or self._http_fetch
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        # The key ids the issuer last said it publishes (``published``), if it said.
        self._announced: frozenset[str] | None = None

    def published(self, kids: frozenset[str]) -> None:
        """The issuer's word, each second, of the keys it publishes now: a key it
        retired stops counting here at once, and a new one is fetched the first time a
        token names it, however recent the last fetch."""
        self._announced = kids
        if not kids >= self._keys.keys():
            self._keys = {kid: key for kid, key in self._keys.items() if kid in kids}

    @staticmethod
    async def _http_fetch(url: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url)
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

    async def refresh(self, min_age: float = MIN_SECONDS_BETWEEN_JWKS_FETCHES) -> None:
        """Fetches the keys again, unless they were fetched less than ``min_age`` ago."""
        async with self._lock:
            if time.monotonic() - self._fetched_at < min_age:
                return
            try:
                document = await self._fetch(self.jwks_url)
                # An empty set is a real answer (every key retired): joserfc refuses it.
                found = KeySet.import_key_set(document).keys if document.get("keys") else []  # type: ignore[arg-type]
            except (httpx.HTTPError, JoseError, ValueError, TypeError, AttributeError) as exc:
                raise Unauthenticated("signing keys are unavailable") from exc
            self._keys = {str(key.kid): key for key in found if isinstance(key, RSAKey) and key.kid}
            self._fetched_at = time.monotonic()
            if self._announced is not None:
                # What the issuer publishes now is its latest word, newer than the list.
                self._announced = frozenset(self._keys)

    async def _refresh_if_stale(self) -> None:
        if self._keys and time.monotonic() - self._fetched_at > KEYS_MAX_AGE_SECONDS:
            try:
                await self.refresh()
            except Unauthenticated:
                log.warning("signing keys cannot be fetched again: the keys held still count")
                self._fetched_at = time.monotonic() - KEYS_MAX_AGE_SECONDS + KEYS_RETRY_SECONDS

    async def holds(self, kid: str) -> bool:
        """Whether the key still counts (a token checked with it before may be used)."""
        await self._refresh_if_stale()
        return kid in self._keys and (self._announced is None or kid in self._announced)

    async def key_for(self, kid: str) -> RSAKey:
        await self._refresh_if_stale()
        key = self._keys.get(kid)
        if key is None:
            # A key the issuer announced is fetched at once. So is one it may have begun
            # to sign with since its last word (a rotation "at once" does, and a client
            # asks a new token straight away), though not more often than
            # UNKNOWN_KEY_FETCH_SECONDS: forged key ids must not make every request a fetch.
            if self._announced is None:
                await self.refresh()  # an issuer that announces nothing: the usual wait
            else:
                announced = kid in self._announced
                await self.refresh(min_age=0.0 if announced else UNKNOWN_KEY_FETCH_SECONDS)
            key = self._keys.get(kid)
        if key is None or (self._announced is not None and kid not in self._announced):
            raise Unauthenticated("token signed by an unknown key")
        return key


def revoked_client_key(client_id: str) -> str:
    """How a client revoked whole is listed among revoked token ids: every token it was
    issued goes with it (token ids never hold a colon)."""
    return f"client:{client_id}"


class TokenRevoked(Unauthenticated):
    """A token revoked before it expired: only the gateway, which keeps revocations,
    knows it; the proxy refuses it instead of forwarding it to a service."""

    def __init__(self) -> None:
        super().__init__("token has been revoked")


class TokenVerifier:
    """Verifies access tokens and turns them into a :class:`Principal`.

    The tokens are the gateway's own (RFC 9068). An external OpenID provider may sign
    users in instead (``external``): its tokens are told apart by their issuer and
    checked against its JWKS, the tenant read from its ``tenant_claim``; since many
    providers type access tokens plain ``JWT``, ``accept_jwt_typ``. Scopes may come as
    ``scope`` (a string) or ``scp`` (a list), the client as ``client_id`` or ``azp``.
    """

    def __init__(
        self,
        keys: KeyCache,
        issuer: str,
        audience: str,
        tenant_claim: str = "tenant",
        accept_jwt_typ: bool = False,
        external: TokenVerifier | None = None,
        revoked: Container[str] = (),
    ) -> None:
        self.keys = keys
        # Ids (jti) of tokens revoked before they expired.
        self.revoked = revoked
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim
        self.token_types = ACCESS_TOKEN_TYPES | ({"jwt"} if accept_jwt_typ else set())
        self.external = external
        # Claims of tokens whose signature was checked: a caller sends the same token
        # until it expires, and the RSA check is the dearest part of a cached answer.
        # Expiry and the other claims are checked again on every use.
        # Kept with the key that signed them: a key retired since ends them.
        self._signed: Lru[str, tuple[str, dict[str, Any]]] = Lru(VERIFIED_TOKENS)

    async def verify(self, token: str) -> Principal:
        signed = self._signed.get(token)
        if signed is not None and await self.keys.holds(signed[0]):
            return self._principal(signed[1])
        if self.external is not None and _unverified_issuer(token) == self.external.issuer:
            return await self.external.verify(token)
        header = _unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated("token algorithm must be RS256")
        if str(header.get("typ", "")).lower() not in self.token_types:
            raise Unauthenticated("token type must be at+jwt")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token names no key")
        key = await self.keys.key_for(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        except ExceededSizeError as exc:
            raise Unauthenticated("token is too large") from exc
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("token signature is invalid") from exc
        principal = self._principal(decoded.claims)
        self._signed.put(token, (kid, decoded.claims))
        return principal

    def _principal(self, claims: dict[str, Any]) -> Principal:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise Unauthenticated("token issuer is not trusted")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise Unauthenticated("token audience is wrong")
        exp = claims.get("exp")
        # NaN and infinity parse as JSON numbers and would never expire.
        if not _finite(exp) or exp <= now:
            raise Unauthenticated("token has expired")
        nbf = claims.get("nbf", claims.get("iat"))
        if not _finite(nbf) or nbf - CLOCK_LEEWAY_SECONDS > now:
            raise Unauthenticated("token is not valid yet")
        client_id = claims.get("client_id", claims.get("azp"))
        for name, value in (
            ("sub", claims.get("sub")),
            ("client_id", client_id),
            ("jti", claims.get("jti")),
        ):
            if not isinstance(value, str):
                raise Unauthenticated(f"token lacks the {name} claim")
        if unknown := getattr(self.revoked, "unknown", None):
            # A service that has not read the revocations (and erased tenants) since it
            # started, or lately, would take what the gateway refuses: none is taken.
            raise UpstreamUnavailable.for_now(
                f"this service's list of revoked tokens is {unknown}; send the request "
                "again in a moment"
            )
        if claims["jti"] in self.revoked or revoked_client_key(str(client_id)) in self.revoked:
            raise TokenRevoked()
        tenant = claims.get(self.tenant_claim)
        return Principal(
            subject=claims["sub"],
            client_id=str(client_id),
            tenant_id=tenant if isinstance(tenant, str) and tenant else None,
            scopes=_scopes(claims),
            token_id=claims["jti"],
            claims=claims,
        )


def bearer_token(request: Request) -> str:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    return token.strip()


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller (401 when there is none)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(bearer_token(request))
    request.state.principal = principal
    request.state.tenant_id = principal.tenant_id
    # Every log line of the rest of this request carries the tenant.
    current_tenant.set(principal.tenant_id)
    return principal


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency factory: the caller, who must hold ``scope`` (else 403 naming it)."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        principal.require(scope)
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    dependency.required_scope = scope  # type: ignore[attr-defined]  # read by the OpenAPI
    return dependency
