"""``/oauth/authorize``: the authorization code flow's sign-in page (PKCE S256 only).

Errors about the client or its redirect URI are shown on the page (redirecting to an
unchecked URI would make the gateway an open redirector); every other error goes back
to the client's redirect URI as RFC 6749 §4.1.2.1 says.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.gateway.erasures.repository import ErasureRepository
from services.gateway.oauth import sessions
from services.gateway.oauth.models import OAuthClient
from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.server import fields_holding_nul
from services.gateway.oauth.throttle import SignInThrottle
from services.gateway.oauth.user_grants import granted_scope
from services.gateway.users.emails import MAX_EMAIL_LENGTH, canonical_email
from services.gateway.users.passwords import SignInsBusy, verify_password
from services.gateway.users.repository import UserRepository
from shared.audit import audit_as
from shared.deps import DbSession
from shared.http import port_is_usable

router = APIRouter(tags=["oauth"])
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters.
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
WRONG_CREDENTIALS = "Wrong e-mail or password."
# A nonce is the client's random value; far longer is no nonce but a payload.
MAX_NONCE = 255


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    response_type: str
    scope: str
    state: str
    code_challenge: str
    code_challenge_method: str
    # OpenID Connect: the client's value, which the ID token names back.
    nonce: str = ""
    # OpenID Connect: "none" asks for no page at all, which no one signed in here can
    # have (a sign-in keeps no session): login_required.
    prompt: str = ""

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> AuthorizationRequest:
        """The request as the query (page) or the form (sign-in) gives it; a field given
        twice is the last, as the routes' declared parameters read it (and refused by
        ``_checked``)."""
        return cls(**{f.name: str(values.get(f.name, "")) for f in fields(cls)})

    def hidden_fields(self) -> str:
        return "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in vars(self).items()
        )


AUTHORIZATION_FIELDS = frozenset(field.name for field in fields(AuthorizationRequest))


LOOPBACK_HOSTS = frozenset(("127.0.0.1", "::1"))


def registered(redirect_uri: str, redirect_uris: Iterable[str]) -> bool:
    """Whether ``redirect_uri`` is one the client registered: exactly, or (RFC 8252
    §7.3) on a loopback IP at another port, which a native or command-line tool takes
    from the system when it starts listening."""
    if redirect_uri in redirect_uris:
        return True
    asked = urlsplit(redirect_uri)
    # RFC 6749 §3.1.2: a redirect URI has no fragment (the code would land in it).
    if (
        asked.scheme != "http"
        or asked.hostname not in LOOPBACK_HOSTS
        or "@" in asked.netloc  # a user name, even an empty one
        or asked.fragment
        or "#" in redirect_uri
    ):
        return False
    if not port_is_usable(asked):
        return False
    for uri in redirect_uris:
        known = urlsplit(uri)
        if (known.scheme, known.hostname, known.path, known.query) == (
            asked.scheme,
            asked.hostname,
            asked.path,
            asked.query,
        ) and not known.username:
            return True
    return False


class PageError(Exception):
    """Shown on the page: the client or redirect URI cannot be trusted."""


class RedirectError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _answer_url(
    request: AuthorizationRequest, way_back: str, params: dict[str, str], issuer: str
) -> str:
    # RFC 9207: every answer sent to the redirect_uri names the issuer, errors included
    # (the metadata says authorization_response_iss_parameter_supported).
    params["iss"] = issuer
    if request.state:
        params["state"] = request.state
    separator = "&" if "?" in way_back else "?"
    return f"{way_back}{separator}{urlencode(params)}"


def _redirect(
    request: AuthorizationRequest, way_back: str, params: dict[str, str], issuer: str
) -> RedirectResponse:
    # 303: the browser follows with GET, never re-posting the password.
    return RedirectResponse(_answer_url(request, way_back, params, issuer), 303)


# The user agent's way back: given twice, neither value can be trusted.
WAY_BACK = frozenset({"client_id", "redirect_uri"})


def _repeated(items: Iterable[tuple[str, Any]]) -> frozenset[str]:
    """The parameters of an authorization request given more than once, which RFC 6749
    §3.1 forbids."""
    counts = Counter(name for name, _ in items if name in AUTHORIZATION_FIELDS)
    return frozenset(name for name, count in counts.items() if count > 1)


def _refused(
    request: AuthorizationRequest, way_back: str, error: RedirectError, issuer: str
) -> RedirectResponse:
    """A request refused once its user signed in: sent back to the client."""
    params = {"error": error.error, "error_description": error.description}
    return _redirect(request, way_back, params, issuer)


def _refused_unsigned(
    request: AuthorizationRequest, way_back: str, error: RedirectError, issuer: str
) -> HTMLResponse:
    """A request refused before anyone signed in: the page says why and links back to
    the client with the error, but does not send the browser there by itself. Any
    tenant admin may register a client whose redirect URI is a phishing page, and a
    link to this origin with a malformed request would have sent browsers to it without
    a click (RFC 9700 §4.11.2: redirect automatically only to a URI trusted)."""
    params = {"error": error.error, "error_description": error.description}
    return _page(
        None,
        f"The application's sign-in request was refused ({error.error}): {error.description}.",
        status=400,
        way_back=_answer_url(request, way_back, params, issuer),
    )


async def _way_back(
    session: DbSession, request: AuthorizationRequest, repeated: frozenset[str]
) -> tuple[OAuthClient, str]:
    """The client, and the redirect URI its answers go to: the one asked for, or, when
    none is, the only one it registered (RFC 6749 §3.1.2.3)."""
    if repeated & WAY_BACK:
        raise PageError("client_id and redirect_uri must each be given once.")
    client = await ClientRepository(session).get_active(request.client_id)
    if client is None:
        raise PageError("Unknown application (client_id).")
    if not request.redirect_uri:
        if len(client.redirect_uris) != 1:
            raise PageError(
                "redirect_uri is required: this application registered "
                f"{len(client.redirect_uris)} redirect URIs."
            )
        return client, client.redirect_uris[0]
    if not registered(request.redirect_uri, client.redirect_uris):
        raise PageError("This application's redirect_uri is not registered.")
    return client, request.redirect_uri


def _check(request: AuthorizationRequest, repeated: frozenset[str]) -> None:
    """The rest of an authorization request, refused back to the client's redirect URI."""
    if repeated:
        raise RedirectError(
            "invalid_request", f"given more than once: {', '.join(sorted(repeated))}"
        )
    if not request.response_type:
        raise RedirectError("invalid_request", "response_type is required: code")
    if request.response_type != "code":
        raise RedirectError("unsupported_response_type", "response_type must be code")
    if not request.code_challenge:
        raise RedirectError("invalid_request", "code_challenge is required (PKCE)")
    if request.code_challenge_method != "S256":
        raise RedirectError("invalid_request", "code_challenge_method must be S256")
    if not CHALLENGE.fullmatch(request.code_challenge):
        raise RedirectError("invalid_request", "code_challenge must be 43 base64url characters")
    if len(request.nonce) > MAX_NONCE:
        raise RedirectError("invalid_request", f"nonce must be at most {MAX_NONCE} characters")
    if "none" in request.prompt.split():
        raise RedirectError("login_required", "prompt=none: no one is signed in here")


def _page(
    request: AuthorizationRequest | None,
    message: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    way_back: str | None = None,
) -> HTMLResponse:
    form = ""
    if request is not None:
        form = (
            '<form method="post" action="/oauth/authorize">'
            f"{request.hidden_fields()}"
            '<label>E-mail <input name="email" type="email" autocomplete="username" required>'
            "</label>"
            '<label>Password <input name="password" type="password" '
            'autocomplete="current-password" required></label>'
            '<button type="submit">Sign in</button></form>'
        )
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    if way_back is not None:
        note += f'<p><a href="{html.escape(way_back)}">Back to the application</a></p>'

    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width"><title>Sign in · Lodestar</title>'
        "<style>body{font-family:system-ui;max-width:22rem;margin:4rem auto}"
        "label{display:block;margin:.8rem 0}input{width:100%;padding:.4rem}"
        "button{padding:.5rem 1.2rem}</style></head><body>"
        f"<h1>Lodestar</h1>{note}{form}</body></html>"
    )
    policy = {"Content-Security-Policy": _content_policy(request)}
    return HTMLResponse(
        body, status_code=status, headers={**PAGE_HEADERS, **policy, **(headers or {})}
    )


def _content_policy(request: AuthorizationRequest | None) -> str:
    """The page's CSP. Chromium and WebKit hold every redirect a form's answer leads to
    against ``form-action``: the client's redirect URI, and wherever that sends the
    browser on (a portal's callback that redirects to its app). The sign-in form's page
    therefore sets none; its form posts only to this page, and nothing on it is
    written by anyone but the gateway. A page without the form allows no form at all."""
    form_action = "" if request is not None else "form-action 'none'; "
    return f"default-src 'none'; style-src 'unsafe-inline'; {form_action}frame-ancestors 'none'"


async def _start(
    session: DbSession, request: AuthorizationRequest, repeated: frozenset[str], issuer: str
) -> Response:
    try:
        _, way_back = await _way_back(session, request, repeated)
    except PageError as error:
        return _page(None, str(error), status=400)
    try:
        _check(request, repeated)
    except RedirectError as error:
        return _refused_unsigned(request, way_back, error, issuer)
    return _page(request, "")


_HTML = {"text/html": {"schema": {"type": "string"}}}
# Both routes answer the sign-in page, or send the browser back to the client.
_PAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The sign-in page", "content": _HTML},
    303: {
        "description": "Back to the client's `redirect_uri` with `code` and `state` once "
        "the user signed in (or `error=invalid_scope`), and `iss` (RFC 9207)"
    },
    400: {
        "description": "The page, saying why: no usable `client_id` or `redirect_uri`, or "
        "a request the client must mend (RFC 6749 §4.1.2.1's `error`, `prompt=none`'s "
        "`login_required`), then with a link back to the client carrying `error`, "
        "`state` and `iss`, which the browser is not sent to by itself (RFC 9700 §4.11.2)",
        "content": _HTML,
    },
}


@router.get(
    "/oauth/authorize",
    summary="Sign-in page of the authorization code flow",
    response_class=HTMLResponse,
    responses=_PAGE_ANSWERS,
)
async def authorize_page(
    request: Request,
    session: DbSession,
    client_id: str = "",
    redirect_uri: str = "",
    response_type: str = "",
    scope: str = "",
    state: str = "",
    code_challenge: str = "",
    code_challenge_method: str = "",
    nonce: str = "",
    prompt: str = "",
) -> Response:
    """Shows the sign-in form. Needs ``response_type=code``, a registered
    ``redirect_uri`` (optional for a client that registered one), and PKCE with
    ``code_challenge_method=S256``."""
    # The parameters above are declared for the API document; read as one request.
    return await _start(
        session,
        AuthorizationRequest.read(request.query_params),
        _repeated(request.query_params.multi_items()),
        request.app.state.settings.effective_issuer,
    )


@router.post(
    "/oauth/authorize",
    summary="Signs the user in and redirects with a code",
    response_class=HTMLResponse,
    responses={
        **_PAGE_ANSWERS,
        401: {
            "description": "The page again: wrong e-mail or password",
            "content": _HTML,
        },
        429: {
            "description": "The page again: the address failed to sign in ten times in a row; "
            "`Retry-After` says when it may try again (15 minutes after the last failure)",
            "content": _HTML,
        },
    },
)
async def authorize_submit(
    request: Request,
    session: DbSession,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    response_type: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    code_challenge: Annotated[str, Form()] = "",
    code_challenge_method: Annotated[str, Form()] = "",
    nonce: Annotated[str, Form()] = "",
    prompt: Annotated[str, Form()] = "",
) -> Response:
    # As on the page, the request's fields are declared for the API document.
    submitted = await request.form()
    authorization = AuthorizationRequest.read(submitted)
    issuer = request.app.state.settings.effective_issuer
    form = submitted.multi_items()
    if names := fields_holding_nul(form):
        return _page(None, f"These fields must not contain the NUL character: {names}.", 400)
    try:
        client, way_back = await _way_back(session, authorization, _repeated(form))
    except PageError as error:
        return _page(None, str(error), status=400)
    try:
        _check(authorization, _repeated(form))
    except RedirectError as error:
        return _refused_unsigned(authorization, way_back, error, issuer)
    # Looked up within the application's tenant: a user of another tenant is as unknown
    # here as an address no one has (a refusal naming it would tell that it exists).
    # An application of no tenant signs no user in.
    tenant_id = client.tenant_id if email else None
    if client.tenant_id is not None:
        # Every attempt at a tenant's portal is in its trail (an unknown address, one
        # paused), so that guessing there shows; a known user is named below.
        audit_as(
            request,
            actor=None,
            client_id=client.client_id,
            tenant_id=client.tenant_id,
        )
    # One mailbox, one count of failures, however it is typed.
    email = canonical_email(email)
    if len(email) > MAX_EMAIL_LENGTH:
        # No user has it, and its count of failures would be kept for nobody.
        request.state.audit_detail = {"outcome": "sign_in_failed"}
        return _page(
            authorization, f"An e-mail address has at most {MAX_EMAIL_LENGTH} characters.", 400
        )
    throttle = SignInThrottle(session)
    if tenant_id is not None:
        wait = await throttle.seconds_to_wait(tenant_id, email)
        if wait:
            request.state.audit_detail = {"outcome": "sign_in_paused"}
            minutes = math.ceil(wait / 60)
            return _page(
                authorization,
                f"Too many failed sign-ins for this address: try again in {minutes} "
                f"minute{'s' if minutes > 1 else ''}.",
                status=429,
                headers={"Retry-After": str(wait)},
            )
    user = (
        await UserRepository(session).by_email(tenant_id, email) if tenant_id is not None else None
    )
    # The hash is checked even for an unknown address, so timing reveals no account.
    try:
        valid = await verify_password(
            password,
            user.password_hash if user else None,
            request.client.host if request.client else None,
        )
    except SignInsBusy:
        return _page(
            authorization,
            "Too many sign-ins at this moment: try again in a second.",
            status=429,
            headers={"Retry-After": "1"},
        )
    if user is not None:
        # Failed sign-ins of a known account show in that tenant's audit too.
        audit_as(
            request,
            actor=user.id,
            client_id=client.client_id,
            tenant_id=user.tenant_id,
        )
    if user is not None and valid:
        # Read again, locked, as a token request reads it: deleted or changed during the
        # password check, the user signs in as it is now (or not at all), and a
        # deletion waits for the code written below.
        user = await sessions.lock_user(session, user.id, user.tenant_id)
    if user is None or not valid or user.disabled_at is not None:
        request.state.audit_detail = {"outcome": "sign_in_failed"}
        # Not for a tenant erased meanwhile: the count, with the address, would
        # outlive the erasure.
        if tenant_id is not None and await ErasureRepository(session).unerased(tenant_id):
            await throttle.failed(tenant_id, email)
        return _page(authorization, WRONG_CREDENTIALS, status=401)
    await throttle.signed_in(user.tenant_id, email)
    granted = granted_scope(authorization.scope, user, client)
    if not granted:
        refusal = RedirectError("invalid_scope", "no requested scope is allowed")
        return _refused(authorization, way_back, refusal, issuer)
    code = await sessions.issue_code(
        session,
        client.client_id,
        user.id,
        user.tenant_id,
        # As asked: the token request names it again only if the authorization did.
        authorization.redirect_uri,
        granted,
        authorization.code_challenge,
        nonce=authorization.nonce or None,
    )
    request.state.audit_detail = {"outcome": "signed_in", "scope": granted}
    return _redirect(authorization, way_back, {"code": code}, issuer)
