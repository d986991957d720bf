"""The token endpoint's user grants: ``authorization_code`` (PKCE S256) and
``refresh_token`` with rotation. A refresh token works once; using it again revokes
every token of its family (the sign-in it descends from)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.oauth import sessions
from services.gateway.oauth.minting import OPENID, mint_access_token, mint_id_token
from services.gateway.oauth.models import OAuthClient
from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.revoked import refuse_at_once
from services.gateway.oauth.secrets import verify_secret
from services.gateway.oauth.server import TokenRequest, TokenServer, basic_credentials, described
from services.gateway.users.models import User
from services.gateway.users.repository import UserRepository
from shared.audit import audit_as
from shared.scopes import ROLES
from shared.time import utcnow

USER_GRANT_TYPES = ("authorization_code", "refresh_token")
# Users' access tokens live briefly: role, limit and password changes reach the next
# one, and a revoked session stops minting them.
USER_TOKEN_TTL_SECONDS = 900
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def authenticate_client(session: AsyncSession, form_request: TokenRequest) -> OAuthClient:
    """The calling client: a public one by ``client_id`` alone, a confidential one by
    its secret (HTTP Basic or form), never both ways at once."""
    basic_id, basic_secret = basic_credentials(form_request.headers)
    client_id = basic_id or form_request.form.get("client_id")
    secret = basic_secret or form_request.form.get("client_secret")
    client = await ClientRepository(session).get_active(client_id)
    if client is None:
        raise InvalidClientError(description="client authentication failed")
    if client.public:
        if secret:
            raise InvalidClientError(description="a public client has no secret")
        return client
    if not secret or client.secret_hash is None or not verify_secret(secret, client.secret_hash):
        raise InvalidClientError(description="client authentication failed")
    return client


def granted_scope(requested: str, user: User, client: OAuthClient) -> str:
    """What a user's token may carry: asked for, held by the role and by the client;
    and ``openid`` when asked for, which gives the sign-in an ID token and no rights."""
    allowed = set(ROLES.get(user.role, ())) & set(client.scopes)
    wanted = set(requested.split()) if requested.strip() else allowed
    return " ".join(sorted(wanted & (allowed | {OPENID})))


async def token_response(
    request: Request, session: AsyncSession, form_request: TokenRequest
) -> JSONResponse:
    server: TokenServer = request.app.state.token_server
    try:
        client = await authenticate_client(session, form_request)
        # In the client's tenant's trail, refused too: a replayed code or a reused
        # refresh token (which ends the sign-in) is what a tenant most needs to see.
        audit_as(
            request,
            actor=None,
            client_id=client.client_id,
            tenant_id=client.tenant_id,
        )
        body = await _grant(request, session, form_request, client)
    except OAuth2Error as error:
        response = server.error_response(error)
        response.headers.update(NO_STORE)
        return response
    return JSONResponse(body, headers=NO_STORE)


def _required(form_request: TokenRequest, name: str) -> str:
    value = form_request.form.get(name)
    if not value:
        raise InvalidRequestError(f"{name} is required")
    return value


# RFC 7636 §4.1: 43 to 128 unreserved characters. Checked before the code is looked
# up, so a malformed request does not use the code up.
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def _verifier(form_request: TokenRequest) -> str:
    verifier = _required(form_request, "code_verifier")
    if not VERIFIER.fullmatch(verifier):
        raise InvalidRequestError(
            "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' "
            "and '~' (RFC 7636)"
        )
    return verifier


async def _grant(
    request: Request, session: AsyncSession, form_request: TokenRequest, client: OAuthClient
) -> dict[str, Any]:
    grant_type = form_request.form["grant_type"]
    secret = form_request.form.get(
        "code" if grant_type == "authorization_code" else "refresh_token"
    )
    if secret:
        await sessions.lock_user_named(session, grant_type, secret)
    try:
        if grant_type == "authorization_code":
            redeemed = await sessions.redeem_code(
                session,
                _required(form_request, "code"),
                client.client_id,
                # RFC 6749 §4.1.3: required when the authorization request named one.
                form_request.form.get("redirect_uri") or "",
                _verifier(form_request),
                client.redirect_uris[0] if len(client.redirect_uris) == 1 else None,
            )
            scope = redeemed.scope
        else:
            redeemed = await sessions.rotate_refresh(
                session,
                _required(form_request, "refresh_token"),
                client.client_id,
                form_request.form.get("scope") or "",
            )
            scope = redeemed.scope
    except sessions.ScopeBeyondSignIn as error:
        raise InvalidScopeError(described(str(error))) from None
    except sessions.SessionError as error:
        refuse_at_once(request, error.revoked)
        request.state.audit_detail = {"refused": error.reason, "tokens_revoked": len(error.revoked)}
        raise InvalidGrantError(error.reason) from None
    user = await UserRepository(session).get(redeemed.user_id)
    if user is None or user.disabled_at is not None:
        refuse_at_once(request, await sessions.revoke_family(session, redeemed.family_id))
        raise InvalidGrantError("the user can no longer sign in")
    scope = " ".join(sorted(set(scope.split()) & set(granted_scope(scope, user, client).split())))
    audit_as(
        request,
        actor=user.id,
        client_id=client.client_id,
        tenant_id=user.tenant_id,
    )
    settings = request.app.state.settings
    jti = secrets.token_hex(16)
    access_token = mint_access_token(
        request.app.state.signer,
        settings.effective_issuer,
        settings.audience,
        USER_TOKEN_TTL_SECONDS,
        subject=user.id,
        client_id=client.client_id,
        tenant_id=user.tenant_id,
        scope=scope,
        extra=user.token_claims(),
        jti=jti,
    )
    await sessions.record_access_token(
        session,
        redeemed.family_id,
        jti,
        user.tenant_id,
        utcnow() + timedelta(seconds=USER_TOKEN_TTL_SECONDS),
    )
    refresh_token = await sessions.issue_refresh(
        session, redeemed.family_id, client.client_id, user.id, user.tenant_id, redeemed.granted
    )
    answer = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": USER_TOKEN_TTL_SECONDS,
        "scope": scope,
        "refresh_token": refresh_token,
    }
    if OPENID in scope.split() and redeemed.signed_in_at is not None:
        # Only when the user signs in: a refresh proves no new sign-in (Core §12.2).
        answer["id_token"] = mint_id_token(
            request.app.state.signer,
            settings.effective_issuer,
            USER_TOKEN_TTL_SECONDS,
            subject=user.id,
            client_id=client.client_id,
            tenant_id=user.tenant_id,
            signed_in_at=int(redeemed.signed_in_at.timestamp()),
            nonce=redeemed.nonce,
        )
    return answer
