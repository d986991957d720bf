"""The OAuth 2 authorization server, built on authlib's RFC 6749 machinery.

authlib has no Starlette integration and its client lookup is synchronous, so the
endpoint reads the form and loads the named client from the database first; the
server then runs authlib's client_credentials grant (client authentication by
``client_secret_basic`` or ``client_secret_post``, scope checks, RFC 6749 §5.2 errors)
against that preloaded client, and authlib's RFC 9068 generator signs the token.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote_plus

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from fastapi import Request
from fastapi.responses import JSONResponse
from joserfc.jwk import KeySet
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from services.gateway.oauth.models import OAuthClient
from services.gateway.oauth.secrets import verify_secret
from services.gateway.oauth.signing import Signer
from shared.auth import ALGORITHM
from shared.service import media_type

log = logging.getLogger(__name__)

GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REALM = "lodestar"

# The client this request names, loaded before authlib's synchronous lookup runs.
# A context variable, so concurrent requests never see each other's client.
_loaded_client: ContextVar[TokenClient | None] = ContextVar("loaded_client", default=None)


class TokenClient(ClientMixin):
    """An `oauth_clients` row as authlib sees it: confidential, client_credentials only."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        # A public client has no secret, so no secret authenticates it.
        return self.row.secret_hash is not None and verify_secret(
            client_secret, self.row.secret_hash
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str | None) -> str:
        """The token's scopes: those asked for, or all of the client's when none are."""
        if not scope or not scope.strip():
            return " ".join(sorted(self.row.scopes))
        return " ".join(sorted(set(scope.split()) & set(self.row.scopes)))

    def get_default_redirect_uri(self) -> None:
        # Client credentials only: these clients have no redirection endpoint.
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False


class _FormPayload(OAuth2Payload):
    def __init__(self, form: Mapping[str, str]) -> None:
        self._form = dict(form)

    @property
    def data(self) -> dict[str, str]:
        return self._form

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: [value] for key, value in self._form.items()}


def basic_credentials(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The client id and secret of HTTP Basic credentials (None, None without them).

    RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding, so "+" is a
    space and "%2B" a plus (authlib decodes "%" only). Our ids and secrets hold neither
    "+", "%" nor spaces, so raw ones read the same. Raises UnicodeDecodeError for
    credentials that are no UTF-8.
    """
    value = headers.get("Authorization") or ""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip()).decode("utf-8")
    except binascii.Error:
        return None, None
    client_id, colon, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret) if colon else None


def _authenticate_basic(
    query_client: Callable[[str], TokenClient | None], request: TokenRequest
) -> TokenClient | None:
    """authlib's ``client_secret_basic``, reading the credentials as RFC 6749 says."""
    client_id, client_secret = basic_credentials(request.headers)
    if not client_id or not client_secret:
        return None
    client = query_client(client_id)
    if client is None or not client.check_client_secret(client_secret):
        return None
    return client


def _basic_client_id(headers: Mapping[str, str]) -> str | None:
    """The client id of HTTP Basic credentials; credentials that are no UTF-8 or hold
    a NUL authenticate no client (401), rather than failing in the lookup."""
    try:
        client_id, _ = basic_credentials(headers)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise InvalidClientError(
            description="the Basic credentials are not UTF-8", status_code=401
        ) from None
    if client_id is not None and "\x00" in client_id:
        raise InvalidClientError(description="client authentication failed", status_code=401)
    return client_id or None


def fields_holding_nul(items: Iterable[tuple[str, object]]) -> str:
    """The form fields holding a NUL, which PostgreSQL keeps in no text (a form is no
    JSON for the input guard to read), named as JSON writes it; "" when none does."""
    holding = sorted({name for name, value in items if "\x00" in name or "\x00" in str(value)})
    return ", ".join(name.replace("\x00", "\\u0000") for name in holding)


class TokenRequest(OAuth2Request):
    """A token request read from Starlette, its form already parsed."""

    def __init__(self, request: Request, form: Mapping[str, str], public_uri: str) -> None:
        # TLS ends in front of the gateway (ingress, load balancer), so authlib's
        # https rule is checked against the public token endpoint, not the inner hop.
        super().__init__(request.method, public_uri, headers=request.headers)
        self.payload = _FormPayload(form)
        self._form = dict(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}

    def claimed_client_id(self) -> str | None:
        """The client id the caller names (Basic or form), before any check."""
        return _basic_client_id(self.headers) or self._form.get("client_id") or None

    @staticmethod
    async def client_id_of_refused(request: Request) -> str | None:
        """The one client a request refused by ``read`` names (Basic credentials, else a
        single form ``client_id``); None when it names none, or none that can be looked up."""
        try:
            basic_id = _basic_client_id(request.headers)
        except InvalidClientError:
            return None
        if basic_id or media_type(request) != FORM_CONTENT_TYPE:
            return basic_id
        try:
            form = await _form_of(request)
        except InvalidRequestError:
            return None
        named = {v for v in form.getlist("client_id") if isinstance(v, str)}
        claimed = named.pop() if len(named) == 1 else None
        return claimed if claimed and "\x00" not in claimed else None

    @classmethod
    async def read(
        cls, request: Request, public_uri: str, require_grant_type: bool = True
    ) -> TokenRequest:
        """Parses the form body; RFC 6749 §3.2 rules that authlib leaves to the framework."""
        if media_type(request) != FORM_CONTENT_TYPE:
            raise InvalidRequestError(f"the body must be {FORM_CONTENT_TYPE}")
        items = [(k, v) for k, v in (await _form_of(request)).multi_items() if isinstance(v, str)]
        form = dict(items)
        repeated = sorted(name for name, count in Counter(k for k, _ in items).items() if count > 1)
        if repeated:
            raise InvalidRequestError(
                described(f"parameters must not repeat: {', '.join(repeated)}")
            )
        if names := fields_holding_nul(items):
            raise InvalidRequestError(
                described(f"parameters must not contain the NUL character: {names}")
            )
        if require_grant_type and not form.get("grant_type"):
            raise InvalidRequestError("grant_type is required")
        token_request = cls(request, form, public_uri)
        basic_id = _basic_client_id(token_request.headers)
        if basic_id and form.get("client_secret"):
            raise InvalidRequestError("use one client authentication method, not two")
        if basic_id and (form.get("client_id") or basic_id) != basic_id:
            # RFC 6749 §2.3: one client per request; which one it is is not ours to guess.
            raise InvalidRequestError("client_id names another client than the Basic credentials")
        return token_request


async def _form_of(request: Request) -> FormData:
    """The request's form; one Starlette will not read (more than 1,000 fields) is an
    RFC 6749 ``invalid_request``, as every other refusal of these endpoints, not
    Starlette's own 400."""
    unreadable = getattr(request.state, "unreadable_form", None)
    if unreadable is None:
        try:
            return await request.form()
        except HTTPException as refused:
            # Asked again (for the client it names), the body is gone: the same answer.
            unreadable = request.state.unreadable_form = str(refused.detail)
    raise InvalidRequestError(described(f"the form cannot be read: {unreadable}"))


def described(text: str) -> str:
    """``text`` as an ``error_description`` may carry it (RFC 6749 §5.2: printable
    ASCII but ``"`` and ``\\``), each other character written ``U+XXXX``: a scope or a
    parameter name a client sent may hold any, and authlib refuses such a description
    with a server error instead of the client's."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else f"U+{ord(c):04X}" for c in text)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        """Every scope asked for must be one the client holds (RFC 6749 §3.3)."""
        requested = (self.request.payload.scope or "").split()
        held = set(self.request.client.row.scopes)
        refused = [scope for scope in requested if scope not in held]
        if refused:
            raise InvalidScopeError(
                described(f"scope not allowed for this client: {' '.join(refused)}")
            )


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 access tokens: our audience, `nbf`, and the client's tenant."""

    def __init__(self, signer: Signer, issuer: str, audience: str, ttl_seconds: int) -> None:
        super().__init__(issuer=issuer, alg=ALGORITHM, expires_generator=ttl_seconds)
        self.signer = signer
        self.audience = audience

    def get_jwks(self) -> KeySet:
        # One key in the set: joserfc signs with it and puts its kid in the header.
        return KeySet([self.signer.current])

    def get_audiences(self, client: TokenClient, user: Any, scope: str) -> str:
        return self.audience

    def get_extra_claims(
        self, client: TokenClient, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        # CONTRACT §2 lists tenant among the claims: the platform admin, which acts for
        # no tenant, has it null (every verifier reads null as no tenant).
        return {"nbf": int(time.time()), "tenant": client.row.tenant_id or None}


class TokenServer(AuthorizationServer):
    """The token endpoint's logic; one instance per app, safe across requests."""

    def __init__(self, signer: Signer, issuer: str, audience: str, ttl_seconds: int) -> None:
        super().__init__(scopes_supported=None)
        self.token_endpoint = f"{issuer}/oauth/token"
        self.register_grant(ClientCredentialsGrant)
        self.register_client_auth_method("client_secret_basic", _authenticate_basic)
        self.register_token_generator(
            "default", AccessTokenGenerator(signer, issuer, audience, ttl_seconds)
        )

    def query_client(self, client_id: str) -> TokenClient | None:
        client = _loaded_client.get()
        return client if client is not None and client.get_client_id() == client_id else None

    def save_token(self, token: dict[str, Any], request: TokenRequest) -> None:
        # Self-contained JWTs: nothing to store; the issuance is logged (never the token).
        log.info(
            "access token issued",
            extra={
                "fields": {"client_id": request.client.get_client_id(), "scope": token.get("scope")}
            },
        )

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # authlib's hook for framework signals; nothing here listens to them.
        return None

    def create_oauth2_request(self, request: TokenRequest) -> TokenRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: Sequence[tuple[str, str]]
    ) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def handle_error_response(self, request: Any, error: OAuth2Error) -> JSONResponse:
        if isinstance(error, InvalidClientError):
            # One answer for an unknown client and a wrong secret, whatever the method.
            error.status_code = 401
            error.description = "client authentication failed"
        response: JSONResponse = super().handle_error_response(request, error)
        if response.status_code == 401:
            # RFC 7617: a Basic challenge names its realm.
            response.headers["WWW-Authenticate"] = (
                f'Basic realm="{REALM}", error="invalid_client", '
                f'error_description="{error.description}"'
            )
        return response

    def error_response(self, error: OAuth2Error) -> JSONResponse:
        return self.handle_error_response(None, error)

    def token_response(self, request: TokenRequest, client: OAuthClient | None) -> JSONResponse:
        """Runs the grant against the client loaded for this request."""
        marker = _loaded_client.set(TokenClient(client) if client is not None else None)
        try:
            response: JSONResponse = self.create_token_response(request)
            return response
        finally:
            _loaded_client.reset(marker)
