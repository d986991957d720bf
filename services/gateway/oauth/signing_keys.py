"""``/v1/signing-keys``: the platform admin rotates the keys that sign tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.gateway.oauth import signing
from services.gateway.oauth.models import SigningKey
from services.gateway.oauth.repository import KeyRepository
from shared.access import KnownParametersOnly
from shared.auth import Principal, require_scope
from shared.deps import DbSession
from shared.scopes import PLATFORM_ADMIN

router = APIRouter(prefix="/v1/signing-keys", tags=["signing keys"])
PlatformAdmin = Annotated[Principal, Depends(require_scope(PLATFORM_ADMIN))]


class SigningKeyOut(BaseModel):
    kid: str
    created_at: datetime
    signs_from: datetime = Field(description="Published from `created_at`, signing from this")
    signing: bool = Field(description="The key this gateway signs new tokens with now")


class SigningKeyList(BaseModel):
    keys: list[SigningKeyOut] = Field(description="Published keys, the newest start first")


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strictly true: "yes" or 1 ending every token of the platform would be a mistake.
    immediately: StrictBool = Field(
        default=False,
        description="For a key feared leaked: sign with the new key at once and retire "
        "every other, so that every token signed before is refused. Otherwise the new key "
        "is published at once, signs ten minutes later, and the older keys are retired "
        "once no token they signed is still valid.",
    )


def _out(row: SigningKey, signing_kid: str) -> SigningKeyOut:
    return SigningKeyOut(
        kid=row.kid,
        created_at=row.created_at,
        signs_from=row.signs_from,
        signing=row.kid == signing_kid,
    )


@router.get("", response_model=SigningKeyList)
async def list_signing_keys(
    request: Request, principal: PlatformAdmin, known: KnownParametersOnly, session: DbSession
) -> SigningKeyList:
    """The keys in the JWKS, and which one signs (platform admin only)."""
    signer: signing.Signer = request.app.state.signer
    rows = await KeyRepository(session).active()
    return SigningKeyList(keys=[_out(row, str(signer.current.kid)) for row in rows])


@router.post("", status_code=201, response_model=SigningKeyOut)
async def rotate_signing_key(
    request: Request,
    principal: PlatformAdmin,
    known: KnownParametersOnly,
    session: DbSession,
    rotation: Rotation | None = None,
) -> SigningKeyOut:
    """Adds the next signing key (platform admin only). Every gateway signs with it from
    `signs_from` on; this one publishes it at once, the others within 30 s."""
    immediately = rotation.immediately if rotation else False
    signer: signing.Signer = request.app.state.signer
    row = await signing.rotate(session, immediately, signer.sealer)
    await session.commit()
    await request.app.state.key_reloader.reload()
    return _out(row, str(signer.current.kid))
