"""What a user's sign-in leaves behind: one-time codes, refresh token families, and
access tokens revoked before their time. Only hashes of codes and tokens are stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel, col, select

from services.gateway.erasures.repository import ErasureRepository
from services.gateway.users.models import User
from services.gateway.users.repository import UserRepository
from shared.auth import revoked_client_key
from shared.time import utcnow

CODE_TTL = timedelta(seconds=120)
REFRESH_TTL = timedelta(days=30)


class AuthorizationCode(SQLModel, table=True):
    __tablename__ = "authorization_codes"

    code_hash: str = Field(primary_key=True)
    client_id: str
    user_id: str = Field(foreign_key="users.id")
    tenant_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    expires_at: datetime
    used_at: datetime | None = None
    # An OpenID sign-in's nonce, which its ID token names.
    nonce: str | None = None
    # The refresh and access tokens issued from the code, revoked together; an id of
    # its own, not the code's hash, for an export holds no hash of a credential.
    family_id: str = Field(default_factory=lambda: f"fam_{secrets.token_hex(16)}")


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    token_hash: str = Field(primary_key=True)
    family_id: str
    client_id: str
    user_id: str = Field(foreign_key="users.id")
    tenant_id: str
    scope: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class RevokedAccessToken(SQLModel, table=True):
    __tablename__ = "revoked_access_tokens"

    jti: str = Field(primary_key=True)
    tenant_id: str | None = None
    expires_at: datetime


class IssuedAccessToken(SQLModel, table=True):
    """A live access token of a sign-in (its refresh token family)."""

    __tablename__ = "issued_access_tokens"

    jti: str = Field(primary_key=True)
    family_id: str
    tenant_id: str | None = None
    expires_at: datetime


# Access tokens revoked with a family, (jti, expiry) each: the caller also refuses them
# at once in this process (``RevokedTokens.add``).
Revoked = list[tuple[str, datetime]]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def s256(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Redeemed:
    user_id: str
    tenant_id: str
    # What this token is asked for: the sign-in's scope or a narrower one of it.
    scope: str
    family_id: str
    # What the sign-in granted, which every refresh token of it keeps (RFC 6749 §6: a
    # refresh that names no scope gets the scope granted, not the last one asked).
    granted: str
    # For an ID token: the sign-in's nonce and when the user signed in (a code only).
    nonce: str | None = None
    signed_in_at: datetime | None = None


class ScopeBeyondSignIn(Exception):
    """A refresh asking for scopes its sign-in did not grant: refused before the
    token is used, so the client can try again without them (RFC 6749 §6)."""

    def __init__(self, beyond: set[str]) -> None:
        super().__init__(f"not granted at sign-in: {' '.join(sorted(beyond))}")


class SessionError(Exception):
    """A code or refresh token that cannot be used; ``reused`` when it was used before."""

    def __init__(self, reason: str, reused: bool = False, revoked: Revoked | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reused = reused
        # The access tokens the refusal revoked with the family.
        self.revoked = revoked or []


async def issue_code(
    session: AsyncSession,
    client_id: str,
    user_id: str,
    tenant_id: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    nonce: str | None = None,
) -> str:
    code = secrets.token_urlsafe(32)
    session.add(
        AuthorizationCode(
            code_hash=digest(code),
            client_id=client_id,
            user_id=user_id,
            tenant_id=tenant_id,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            expires_at=utcnow() + CODE_TTL,
            nonce=nonce,
        )
    )
    await session.flush()
    return code


async def redeem_code(
    session: AsyncSession,
    code: str,
    client_id: str,
    redirect_uri: str,
    verifier: str,
    sole_redirect_uri: str | None = None,
) -> Redeemed:
    """The code's grant, once. A second use revokes what the first one issued. The
    token request names the redirect URI the authorization request did; where that
    named none, it may name none or the client's sole registered one, where the code
    went."""
    row = (
        await session.execute(
            select(AuthorizationCode)
            .where(col(AuthorizationCode.code_hash) == digest(code))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.client_id != client_id:
        raise SessionError("unknown authorization code")
    family_id = row.family_id
    if row.used_at is not None:
        # RFC 6749 §4.1.2: a replayed code revokes the tokens issued from it.
        revoked = await revoke_family(session, family_id)
        raise SessionError("authorization code already used", reused=True, revoked=revoked)
    row.used_at = utcnow()
    session.add(row)
    if row.expires_at <= utcnow():
        raise SessionError("authorization code expired")
    as_asked = redirect_uri == row.redirect_uri
    where_it_went = not row.redirect_uri and redirect_uri == sole_redirect_uri
    if not (as_asked or where_it_went):
        raise SessionError("redirect_uri differs from the authorization request")
    if not hmac.compare_digest(s256(verifier), row.code_challenge):
        raise SessionError("code_verifier does not match the code_challenge")
    return Redeemed(
        row.user_id,
        row.tenant_id,
        row.scope,
        family_id,
        granted=row.scope,
        nonce=row.nonce,
        signed_in_at=row.expires_at - CODE_TTL,
    )


async def issue_refresh(
    session: AsyncSession, family_id: str, client_id: str, user_id: str, tenant_id: str, scope: str
) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            token_hash=digest(token),
            family_id=family_id,
            client_id=client_id,
            user_id=user_id,
            tenant_id=tenant_id,
            scope=scope,
            expires_at=utcnow() + REFRESH_TTL,
        )
    )
    await session.flush()
    return token


async def lock_user_named(session: AsyncSession, grant_type: str, secret: str) -> None:
    """Locks (shared) the user an authorization code or refresh token names, before the
    code or token is used: in the order a change of the user (its row, then its
    sign-ins) takes them, so the two go one after the other and never deadlock."""
    table = AuthorizationCode if grant_type == "authorization_code" else RefreshToken
    key = AuthorizationCode.code_hash if table is AuthorizationCode else RefreshToken.token_hash
    named = select(table.user_id, table.tenant_id).where(col(key) == digest(secret))
    found = (await session.execute(named)).one_or_none()
    if found is not None:
        await lock_user(session, found.user_id, found.tenant_id)


async def lock_user(session: AsyncSession, user_id: str, tenant_id: str) -> User | None:
    """The user, read afresh and locked (shared) for minting a code or token: after the
    tenant's erasure lock, which an erasure takes before the users, so that the two go
    one after the other (the code or token row would outlive the erasure, or break it
    on the user's foreign key) and never deadlock. None once the user is gone."""
    await ErasureRepository(session).share_tenant_lock(tenant_id)
    return await UserRepository(session).lock(user_id, share=True)


async def find_refresh(session: AsyncSession, token: str) -> RefreshToken | None:
    return (
        await session.execute(
            select(RefreshToken)
            .where(col(RefreshToken.token_hash) == digest(token))
            .with_for_update()
        )
    ).scalar_one_or_none()


async def rotate_refresh(
    session: AsyncSession, token: str, client_id: str, scope_asked: str = ""
) -> Redeemed:
    """Uses a refresh token up, for its sign-in's scope or the narrower ``scope_asked``;
    a token used before revokes its whole family."""
    row = await find_refresh(session, token)
    if row is None or row.client_id != client_id:
        raise SessionError("unknown refresh token")
    if row.used_at is not None or row.revoked_at is not None:
        revoked = await revoke_family(session, row.family_id)
        raise SessionError(
            "refresh token already used or revoked",
            reused=row.used_at is not None,
            revoked=revoked,
        )
    if row.expires_at <= utcnow():
        raise SessionError("refresh token expired")
    scope = row.scope
    if scope_asked.strip():
        if beyond := set(scope_asked.split()) - set(row.scope.split()):
            raise ScopeBeyondSignIn(beyond)
        scope = " ".join(sorted(set(scope_asked.split())))
    row.used_at = utcnow()
    session.add(row)
    return Redeemed(row.user_id, row.tenant_id, scope, row.family_id, granted=row.scope)


async def revoke_family(session: AsyncSession, family_id: str) -> Revoked:
    """Ends a sign-in: its refresh tokens, and the access tokens issued from it that
    have not expired (returned)."""
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return await _revoke_issued(session, col(IssuedAccessToken.family_id) == family_id)


async def _revoke_issued(session: AsyncSession, families: ColumnElement[bool]) -> Revoked:
    """Revokes the live access tokens of the ``families`` the condition selects that are
    not revoked yet (returned). In the order of their ids, as every revocation takes
    them: two that overlap (a sign-out beside a user's change) wait, never deadlock."""
    live = (
        await session.execute(
            select(IssuedAccessToken)
            .where(
                families,
                col(IssuedAccessToken.expires_at) > utcnow(),
                col(IssuedAccessToken.jti).not_in(select(RevokedAccessToken.jti)),
            )
            .order_by(col(IssuedAccessToken.jti))
        )
    ).scalars()
    revoked = []
    for token in live:
        if await revoke_access_token(session, token.jti, token.tenant_id, token.expires_at):
            revoked.append((token.jti, token.expires_at))
    return revoked


async def record_access_token(
    session: AsyncSession, family_id: str, jti: str, tenant_id: str | None, expires_at: datetime
) -> None:
    """Keeps an access token's id with its family, for as long as it may be used."""
    # The family's expired ones go: a revocation has no use for them.
    await session.execute(
        delete(IssuedAccessToken).where(
            col(IssuedAccessToken.family_id) == family_id,
            col(IssuedAccessToken.expires_at) <= utcnow(),
        )
    )
    session.add(
        IssuedAccessToken(jti=jti, family_id=family_id, tenant_id=tenant_id, expires_at=expires_at)
    )
    await session.flush()


async def revoke_access_token(
    session: AsyncSession, jti: str, tenant_id: str | None, expires_at: datetime
) -> bool:
    """Revokes a token; False when it was already (by this request or a concurrent one:
    a look first, then an insert, let two both insert)."""
    inserted = await session.execute(
        insert(RevokedAccessToken)
        .values(jti=jti, tenant_id=tenant_id, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
        .returning(col(RevokedAccessToken.jti))
    )
    return inserted.first() is not None


async def revocation_end(session: AsyncSession, jti: str) -> datetime | None:
    """Until when ``jti`` (a token, or a client's ``revoked_client_key``) is refused."""
    row = await session.get(RevokedAccessToken, jti)
    return row.expires_at if row is not None and row.expires_at > utcnow() else None


async def access_token_revoked(session: AsyncSession, jti: str, client_id: str) -> bool:
    """Revoked itself, or with its client."""
    keys = (jti, revoked_client_key(client_id))
    found = await session.execute(
        select(RevokedAccessToken.jti).where(col(RevokedAccessToken.jti).in_(keys)).limit(1)
    )
    return found.first() is not None


async def end_user_sessions(
    session: AsyncSession, user_id: str, delete_rows: bool = False
) -> Revoked:
    """Signs a user out everywhere: no refresh token or pending code of theirs works, and
    the access tokens their sign-ins issued are revoked (returned)."""
    await session.execute(
        delete(AuthorizationCode).where(col(AuthorizationCode.user_id) == user_id)
    )
    families = select(RefreshToken.family_id).where(col(RefreshToken.user_id) == user_id)
    revoked = await _revoke_issued(session, col(IssuedAccessToken.family_id).in_(families))
    if delete_rows:
        await session.execute(delete(RefreshToken).where(col(RefreshToken.user_id) == user_id))
    else:
        await session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )
    return revoked
