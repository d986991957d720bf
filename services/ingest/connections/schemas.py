from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from services.ingest.connections.permissions import Platform
from shared.events import Text as Identifier
from shared.time import country_code

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Scopes = Annotated[list[Text], Field(min_length=1, max_length=100)]


def _sealable(credentials: dict[str, Any]) -> dict[str, Any]:
    # Sealed as JSON by orjson, which writes no integer past 64 bits (2**64 was a 500)
    # and nothing nested past 254 levels, and writes 1e400 (read as infinity) as null:
    # a credential sealed otherwise than sent.
    try:
        orjson.dumps(credentials)
    except orjson.JSONEncodeError as refused:
        if "Integer" in str(refused):
            raise ValueError("holds a number past 64 bits; send it as a string") from None
        raise ValueError("is nested more than 254 levels deep") from None
    if not _finite(credentials):
        raise ValueError("holds a number too large for a double; send it as a string")
    return credentials


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


Credentials = Annotated[dict[str, Any], AfterValidator(_sealable)]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Platform
    # As events name stores: a store pushed could not be connected, or the reverse.
    store_id: Identifier
    marketplace: Annotated[str, BeforeValidator(country_code)]
    name: Text | None = None
    granted_scopes: Scopes = Field(
        description="What the seller granted the credential, as the platform names it; "
        "any write scope is refused"
    )
    credentials: Credentials = Field(
        description="Whatever the platform's client needs (refresh token, ...); sealed at "
        "rest and never returned"
    )


class ConnectionUpdate(BaseModel):
    """Pause or resume, or re-authorise with new credentials and scopes."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "paused"] | None = None
    granted_scopes: Scopes | None = None
    credentials: Credentials | None = None


class ConnectionOut(BaseModel):
    id: str
    platform: str
    store_id: str
    marketplace: str
    name: str | None
    granted_scopes: list[str]
    status: str
    created_at: datetime
    updated_at: datetime


class ConnectionList(BaseModel):
    connections: list[ConnectionOut]
