"""The authorization server's HTTP face: token endpoint, JWKS and RFC 8414 metadata."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.server import AUTH_METHODS, GRANT_TYPES, TokenRequest, TokenServer
from services.gateway.oauth.signing import Signer
from shared.auth import ALGORITHM
from shared.deps import DbSession
from shared.scopes import ALL_SCOPES

router = APIRouter(tags=["oauth"])


@router.post(
    "/oauth/token",
    summary="OAuth 2 token endpoint (client_credentials)",
    description=(
        "Form-encoded `grant_type=client_credentials`, client authentication by HTTP "
        "Basic or `client_id`/`client_secret` form fields, optional `scope` (a subset of "
        "the client's scopes; all of them when absent). Errors follow RFC 6749 §5.2."
    ),
)
async def token(request: Request, session: DbSession) -> JSONResponse:
    server: TokenServer = request.app.state.token_server
    try:
        token_request = await TokenRequest.read(request, server.token_endpoint)
    except OAuth2Error as error:
        return server.error_response(error)
    client_id = token_request.claimed_client_id()
    client = await ClientRepository(session).get_active(client_id) if client_id else None
    return server.token_response(token_request, client)


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
        "grant_types_supported": list(GRANT_TYPES),
        # Only client_credentials so far: no authorization endpoint, no response types.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": [ALGORITHM],
        "access_token_signing_alg_values_supported": [ALGORITHM],
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
