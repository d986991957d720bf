from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.errors import refuse_null
from shared.events import EventTime, Text
from shared.openapi import not_nullable

# A store id as events carry it: any store pushed can be granted.
Stores = Annotated[list[Text], Field(min_length=1, max_length=500)]
Scopes = Annotated[list[str], Field(min_length=1, max_length=20)]


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_tenant_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    stores: Stores
    scopes: Scopes
    # Read as strictly as an event's timestamps: a number of seconds or a bare date
    # is refused, not taken for an instant.
    expires_at: EventTime | None = Field(
        default=None, description="When the grant ends by itself; null for no end"
    )


# A change's fields that may be left out but not be null: refused, and so documented.
_NOT_NULL = ("stores", "scopes")


class GrantUpdate(BaseModel):
    """Only the fields present change; ``expires_at: null`` removes the end date."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_nullable(*_NOT_NULL))

    # Left out, they stay; null could only mean "none", which a grant cannot have.
    stores: Stores | None = None
    scopes: Scopes | None = None
    expires_at: EventTime | None = None

    _not_null = field_validator(*_NOT_NULL)(refuse_null)


class GrantOut(BaseModel):
    id: str
    tenant_id: str = Field(description="The seller that issued the grant")
    agency_tenant_id: str
    stores: list[str]
    scopes: list[str]
    expires_at: datetime | None
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None


class GrantList(BaseModel):
    grants: list[GrantOut]


class EffectiveGrantOut(BaseModel):
    id: str
    stores: list[str]
    scopes: list[str]
