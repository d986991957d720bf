"""The authorization server's HTTP face: token endpoint, JWKS and RFC 8414 metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
)
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from services.gateway.oauth import sessions, user_grants
from services.gateway.oauth.minting import ID_TOKEN_CLAIMS, OPENID
from services.gateway.oauth.models import OAuthClient
from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.revoked import RevokedTokens, refuse_at_once
from services.gateway.oauth.server import AUTH_METHODS, GRANT_TYPES, TokenRequest, TokenServer
from services.gateway.oauth.signing import Signer
from services.gateway.oauth.user_grants import USER_GRANT_TYPES
from services.gateway.users.repository import UserRepository
from shared.audit import audit_as
from shared.auth import ALGORITHM, Principal, TokenVerifier, current_principal
from shared.deps import DbSession
from shared.errors import InsufficientScope, Unauthenticated
from shared.limits import USERINFO_PATH
from shared.negotiation import list_header
from shared.openapi import ErrorBody
from shared.revocations import REVOKED_TOKENS_PATH
from shared.scopes import ALL_SCOPES
from shared.service import none_match_holds
from shared.telemetry import current_tenant
from shared.time import utcnow

router = APIRouter(tags=["oauth"])

_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [
                "invalid_request",
                "invalid_client",
                "invalid_grant",
                "unauthorized_client",
                "unsupported_grant_type",
                "invalid_scope",
            ],
        },
        "error_description": {"type": "string"},
    },
}
# What the token, revocation and introspection endpoints answer a request they refuse.
_CLIENT_ERRORS = {
    "400": {
        "description": "RFC 6749 §5.2: a malformed request (not a form, a field missing or "
        "given twice), a bad grant or scope",
        "content": {"application/json": {"schema": _OAUTH_ERROR}},
    },
    "401": {
        "description": "`invalid_client`: no client authentication, an unknown client or a "
        "wrong secret (`WWW-Authenticate: Basic` when Basic was used)",
        "content": {"application/json": {"schema": _OAUTH_ERROR}},
    },
}
_FORM_OF_TOKEN = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {"type": "string"},
                    "token_type_hint": {
                        "type": "string",
                        "enum": ["access_token", "refresh_token"],
                    },
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string"},
                },
            }
        }
    },
}
_REVOKE_API = {
    "requestBody": _FORM_OF_TOKEN,
    "responses": {
        "200": {"description": "Revoked, or a token unknown to this client: no body"},
        **_CLIENT_ERRORS,
    },
}
_INTROSPECT_API = {
    "requestBody": _FORM_OF_TOKEN,
    "responses": {
        "200": {
            "description": 'RFC 7662: `{"active": false}`, or the token\'s claims',
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["active"],
                        "properties": {
                            "active": {"type": "boolean"},
                            "token_type": {"type": "string"},
                            "scope": {"type": "string"},
                            "client_id": {"type": "string"},
                            "sub": {"type": "string"},
                            "tenant": {
                                "type": ["string", "null"],
                                "description": "null in the platform admin's tokens",
                            },
                            "exp": {"type": "integer"},
                            "iat": {"type": "integer"},
                            "nbf": {"type": "integer"},
                            "iss": {"type": "string"},
                            "aud": {"type": "string"},
                            "jti": {"type": "string"},
                        },
                    }
                }
            },
        },
        **_CLIENT_ERRORS,
    },
}
# The route reads its form itself (RFC 6749's rules, not FastAPI's): described here so
# that an integrator sees the fields and answers in the API document.
_TOKEN_API = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {
                            "type": "string",
                            "enum": ["client_credentials", "authorization_code", "refresh_token"],
                        },
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "scope": {"type": "string", "description": "Space-separated scopes"},
                        "code": {"type": "string"},
                        "redirect_uri": {"type": "string"},
                        "code_verifier": {"type": "string", "minLength": 43, "maxLength": 128},
                        "refresh_token": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "A token (and, for a user's sign-in, its next refresh token)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in", "scope"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string", "enum": ["Bearer"]},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                            "refresh_token": {"type": "string"},
                        },
                    }
                }
            },
        },
        **_CLIENT_ERRORS,
    },
}


@router.post(
    "/oauth/token",
    summary="OAuth 2 token endpoint",
    openapi_extra=_TOKEN_API,
    description=(
        "Form-encoded. `grant_type=client_credentials`: client authentication by HTTP "
        "Basic or `client_id`/`client_secret` form fields, optional `scope` (a subset of "
        "the client's scopes; all of them when absent). `grant_type=authorization_code` "
        "with `code`, `redirect_uri` (as the authorization request named it, or "
        "none), `code_verifier` (PKCE S256), and "
        "`grant_type=refresh_token` with `refresh_token` (rotated: each works once; a "
        "reused one revokes its family). Errors follow RFC 6749 §5.2."
    ),
)
async def token(request: Request, session: DbSession) -> JSONResponse:
    server: TokenServer = request.app.state.token_server
    try:
        token_request = await TokenRequest.read(request, server.token_endpoint)
    except OAuth2Error as error:
        # A request refused before any check of its secret (two authentication methods,
        # a field given twice) still names a client: its tenant's trail shows it.
        claimed = await ClientRepository(session).get_active(
            await TokenRequest.client_id_of_refused(request)
        )
        _audit_token_request(request, claimed, proven=False)
        return server.error_response(error)
    if token_request.form["grant_type"] in USER_GRANT_TYPES:
        return await user_grants.token_response(request, session, token_request)
    client = await ClientRepository(session).get_active(token_request.claimed_client_id())
    if client is not None:
        # The issue's log line names the tenant, as every line after it.
        current_tenant.set(client.tenant_id)
    response = server.token_response(token_request, client)
    _audit_token_request(request, client, proven=response.status_code < 400)
    return response


def _audit_token_request(request: Request, client: OAuthClient | None, *, proven: bool) -> None:
    """A token request goes in its client's tenant's trail either way, so that guessing
    at its secret shows there; but a request that did not prove to be the client is
    nobody's."""
    if client is None:
        return
    audit_as(
        request,
        actor=client.client_id if proven else None,
        client_id=client.client_id if proven else None,
        tenant_id=client.tenant_id,
    )
    if not proven:
        request.state.audit_detail = {"claimed_client_id": client.client_id}


async def _authenticated(
    request: Request, session: DbSession
) -> tuple[TokenRequest, OAuthClient] | JSONResponse:
    server: TokenServer = request.app.state.token_server
    try:
        form_request = await TokenRequest.read(
            request, server.token_endpoint, require_grant_type=False
        )
        if not form_request.form.get("token"):
            raise InvalidRequestError("token is required")
        return form_request, await user_grants.authenticate_client(session, form_request)
    except OAuth2Error as error:
        return server.error_response(error)


async def _access_claims(request: Request, token: str) -> dict[str, Any] | None:
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return (await verifier.verify(token)).claims
    except Unauthenticated:
        return None


@router.post(
    "/oauth/revoke",
    summary="RFC 7009 token revocation",
    response_class=Response,
    openapi_extra=_REVOKE_API,
    description=(
        "Form `token` (an access or refresh token) and optional `token_type_hint`, with "
        "the client authenticated as at the token endpoint (a public client by "
        "`client_id`). A refresh token ends its whole family. Answers 200 for an unknown "
        "token, as RFC 7009 §2.2 says."
    ),
)
async def revoke(request: Request, session: DbSession) -> Response:
    checked = await _authenticated(request, session)
    if isinstance(checked, JSONResponse):
        return checked
    form_request, client = checked
    # Audited as the tenant's write it is (RFC 7009 answers 200 whatever the token).
    audit_as(
        request,
        actor=client.client_id,
        client_id=client.client_id,
        tenant_id=client.tenant_id,
    )
    token = form_request.form["token"]
    await sessions.lock_user_named(session, "refresh_token", token)
    refresh = await sessions.find_refresh(session, token)
    if refresh is not None:
        if refresh.client_id != client.client_id:
            return _not_its_token(request) if _refresh_live(refresh) else Response()
        request.state.audit_actor["actor"] = refresh.user_id
        # RFC 7009 §2.1: the access tokens issued from it end with it.
        refuse_at_once(request, await sessions.revoke_family(session, refresh.family_id))
        return Response(status_code=200)
    claims = await _access_claims(request, token)
    if claims is not None and claims.get("client_id") != client.client_id:
        return _not_its_token(request)
    if claims is not None:
        expires_at = datetime.fromtimestamp(float(claims["exp"]), UTC)
        await sessions.revoke_access_token(
            session, str(claims["jti"]), claims.get("tenant"), expires_at
        )
        # Refused from the next request on (by this gateway even should the commit fail:
        # what was asked to be revoked stays so until it expires).
        request.app.state.revoked_tokens.add(str(claims["jti"]), expires_at)
    return Response(status_code=200)


def _refresh_live(refresh: sessions.RefreshToken) -> bool:
    return refresh.used_at is None and refresh.revoked_at is None and refresh.expires_at > utcnow()


def _not_its_token(request: Request) -> JSONResponse:
    """RFC 7009 §2.1: a live token issued to another client is refused, and the client
    told (a 200 let it believe a credential it meant to end was ended)."""
    server: TokenServer = request.app.state.token_server
    request.state.audit_detail = {"outcome": "not_its_token"}
    return server.error_response(
        UnauthorizedClientError(description="the token was issued to another client")
    )


@router.get(REVOKED_TOKENS_PATH, include_in_schema=False)
async def revoked_tokens(request: Request) -> Response:
    """For the services, which verify tokens themselves: the tokens and clients revoked
    (tokens not expired yet), as digests of their ids; and the ids of the signing keys
    published (public in the JWKS), so that a key retired at once stops counting there
    within a second. Tagged: a service that holds the list gets 304 until it changes."""
    signer: Signer = request.app.state.signer
    revoked: RevokedTokens = request.app.state.revoked_tokens
    # And the erased tenants, which a service that restarted since no longer knows.
    erased: set[str] = request.app.state.erasures.erased
    etag, body = revoked.answer([str(key.kid) for key in signer.keys], erased)
    if none_match_holds(list_header(request.headers, "if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.post(
    "/oauth/introspect",
    summary="RFC 7662 token introspection",
    response_class=JSONResponse,
    openapi_extra=_INTROSPECT_API,
    description=(
        "Form `token`, the caller authenticated as a confidential client. Answers "
        '`{"active": false}` for a token that is unknown, expired, revoked, or of '
        "another tenant than the caller's."
    ),
)
async def introspect(request: Request, session: DbSession) -> Response:
    checked = await _authenticated(request, session)
    if isinstance(checked, JSONResponse):
        return checked
    form_request, client = checked
    if client.public:
        server: TokenServer = request.app.state.token_server
        return server.error_response(
            InvalidClientError(description="introspection needs a confidential client")
        )
    token = form_request.form["token"]
    answer = await _introspection(request, session, token)
    tenant = answer.get("tenant")
    if answer["active"] and client.tenant_id is not None and tenant != client.tenant_id:
        answer = {"active": False}
    return JSONResponse(answer, headers=user_grants.NO_STORE)


async def _introspection(request: Request, session: DbSession, token: str) -> dict[str, Any]:
    refresh = await sessions.find_refresh(session, token)
    if refresh is not None:
        if not _refresh_live(refresh):
            return {"active": False}
        if await ClientRepository(session).get_active(refresh.client_id) is None:
            # Its client revoked, it can no longer be used.
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": refresh.scope,
            "client_id": refresh.client_id,
            "sub": refresh.user_id,
            "tenant": refresh.tenant_id,
            "exp": int(refresh.expires_at.timestamp()),
            "iat": int(refresh.created_at.timestamp()),
        }
    claims = await _access_claims(request, token)
    if claims is None or await sessions.access_token_revoked(
        session, str(claims["jti"]), str(claims.get("client_id"))
    ):
        return {"active": False}
    fields = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "tenant")
    return {
        "active": True,
        "token_type": "Bearer",
        **{name: claims[name] for name in fields if name in claims},
        **{name: claims[name] for name in ("roles", "limits") if name in claims},
    }


_JWK_SET = {
    "type": "object",
    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
    "required": ["keys"],
}


@router.get(
    "/.well-known/jwks.json",
    summary="The public keys that sign access tokens",
    responses={200: {"content": {"application/json": {"schema": _JWK_SET}}}},
)
async def jwks(request: Request) -> JSONResponse:
    signer: Signer = request.app.state.signer
    return JSONResponse(signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


def _metadata(request: Request) -> dict[str, Any]:
    issuer = request.app.state.settings.effective_issuer
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        # "none": public clients (frontends), which prove themselves with PKCE.
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": [OPENID, *ALL_SCOPES],
    }


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def authorization_server_metadata(request: Request) -> dict[str, Any]:
    return _metadata(request)


@router.get("/.well-known/openid-configuration", summary="OpenID discovery metadata")
async def openid_configuration(request: Request) -> dict[str, Any]:
    metadata = _metadata(request)
    metadata["id_token_signing_alg_values_supported"] = [ALGORITHM]
    metadata["subject_types_supported"] = ["public"]
    metadata["claims_supported"] = [*ID_TOKEN_CLAIMS, *USERINFO_CLAIMS]
    return metadata


# What the UserInfo endpoint adds to the ID token's claims about a signed-in user.
USERINFO_CLAIMS = ("email", "name", "roles", "limits")
_USERINFO = {
    "type": "object",
    "required": ["sub", "tenant", "email", "name", "roles"],
    "properties": {
        "sub": {"type": "string"},
        "tenant": {"type": "string"},
        "email": {"type": "string"},
        "name": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "limits": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}


_USERINFO_ROUTE: dict[str, Any] = {
    "summary": "OpenID Connect UserInfo",
    "responses": {
        200: {"content": {"application/json": {"schema": _USERINFO}}},
        401: {
            "model": ErrorBody,
            "description": "No valid token, or its user disabled or deleted since: "
            '`WWW-Authenticate: Bearer error="invalid_token"`',
        },
        403: {
            "model": ErrorBody,
            "description": "A token without `openid` (`insufficient_scope`, naming it)",
        },
    },
    "description": (
        "OpenID Connect Core §5.3: who signed in, for a user's access token granted the "
        "`openid` scope (a bearer header): `sub`, `tenant`, `email`, `name`, `roles` and "
        "`limits` as they are now. A token without `openid` (a client's own, for one) gets "
        "403 `insufficient_scope`; a user disabled or deleted since gets 401."
    ),
}


@router.get(USERINFO_PATH, operation_id="userinfo", **_USERINFO_ROUTE)
@router.post(USERINFO_PATH, operation_id="userinfo_by_post", **_USERINFO_ROUTE)
async def userinfo(
    principal: Annotated[Principal, Depends(current_principal)], session: DbSession
) -> JSONResponse:
    if OPENID not in principal.scopes:
        raise InsufficientScope(OPENID)
    user = await UserRepository(session).get(principal.subject)
    if user is None or user.tenant_id != principal.tenant_id or user.disabled_at is not None:
        raise Unauthenticated("the user of this token can no longer sign in")
    claims: dict[str, Any] = {
        "sub": user.id,
        "tenant": user.tenant_id,
        "email": user.email,
        "name": user.name,
        **user.token_claims(),
    }
    return JSONResponse(claims, headers=user_grants.NO_STORE)
