"""The authorization server's HTTP face: token endpoint, JWKS and RFC 8414 metadata."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.gateway.oauth.errors import OAuthError
from services.gateway.oauth.service import (
    ClientCredentials,
    Signer,
    authenticate_client,
    granted_scopes,
    issue_token,
)
from shared.auth import ALGORITHM
from shared.deps import DbSession
from shared.scopes import ALL_SCOPES

router = APIRouter(tags=["oauth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _client_credentials(request: Request, form: dict[str, str]) -> ClientCredentials:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if scheme.lower() == "basic":
        if form_secret:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(
                "invalid_client", "malformed Basic credentials", 401, basic=True
            ) from None
        client_id, sep, client_secret = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "malformed Basic credentials", 401, basic=True)
        return ClientCredentials(unquote(client_id), unquote(client_secret), used_basic=True)
    if form_id and form_secret:
        return ClientCredentials(form_id, form_secret, used_basic=False)
    raise OAuthError("invalid_client", "client authentication is required", 401, basic=True)


@router.post("/oauth/token", summary="OAuth 2 token endpoint (client_credentials)")
async def token(request: Request, session: DbSession) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    raw_form = await request.form()
    form = {k: v for k, v in raw_form.items() if isinstance(v, str)}
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    credentials = _client_credentials(request, form)
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type} is not supported")
    client = await authenticate_client(session, credentials)
    scopes = granted_scopes(client, form.get("scope"))
    settings = request.app.state.settings
    body = issue_token(
        request.app.state.signer,
        client,
        scopes,
        settings.effective_issuer,
        settings.audience,
        settings.token_ttl_seconds,
    )
    return JSONResponse(body, headers=NO_STORE)


@router.get("/.well-known/jwks.json", summary="The public keys that sign access tokens")
async def jwks(request: Request) -> JSONResponse:
    signer: Signer = request.app.state.signer
    return JSONResponse(signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


def _metadata(request: Request) -> dict[str, Any]:
    issuer = request.app.state.settings.effective_issuer
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        # Only client_credentials so far: no authorization endpoint, no response types.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": list(ALL_SCOPES),
    }


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def authorization_server_metadata(request: Request) -> dict[str, Any]:
    return _metadata(request)


@router.get("/.well-known/openid-configuration", summary="OpenID discovery metadata")
async def openid_configuration(request: Request) -> dict[str, Any]:
    metadata = _metadata(request)
    metadata["id_token_signing_alg_values_supported"] = [ALGORITHM]
    metadata["subject_types_supported"] = ["public"]
    return metadata
