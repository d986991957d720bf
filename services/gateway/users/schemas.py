from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.gateway.users.emails import MAX_EMAIL_LENGTH, canonical_email
from services.gateway.users.passwords import MIN_PASSWORD_LENGTH
from shared.errors import refuse_null
from shared.events import Text
from shared.openapi import not_nullable
from shared.time import country_code

# Deliberately loose: the address is proven by whoever delivers the invitation. Kept
# as one spelling of its mailbox (``canonical_email``) before it is checked.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email_shaped(value: str) -> str:
    # Said in words: the pattern itself was the reason a person was shown.
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address such as ana@example.com")
    return value


Email = Annotated[
    str,
    StringConstraints(max_length=MAX_EMAIL_LENGTH),
    AfterValidator(_email_shaped),
    BeforeValidator(lambda value: canonical_email(value) if isinstance(value, str) else value),
]
Role = Literal["owner", "admin", "manager", "analyst", "viewer"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=200)]
# Stores, marketplaces and categories as events carry them: any of them can be a limit.
Values = Annotated[list[Text], Field(min_length=1, max_length=500)]
# A token's payload is at most 128,000 bytes once in base64 (4/3 of its JSON), to every
# verifier here (joserfc's limit); this leaves the other claims room.
LIMITS_CLAIM_BYTES = 64_000


class Limits(BaseModel):
    """What a limited user sees; a dimension left out is not limited."""

    model_config = ConfigDict(extra="forbid")

    stores: Values | None = None
    marketplaces: Values | None = None
    categories: Values | None = None

    @field_validator("marketplaces")
    @classmethod
    def _marketplaces(cls, value: list[str] | None) -> list[str] | None:
        # As events and queries name them: "UK" would limit a user to nothing at all.
        return None if value is None else [country_code(v) for v in value]

    @model_validator(mode="after")
    def _fits_a_token(self) -> Limits:
        # Every access token of the user carries them, and verifiers refuse a token
        # past 128,000 bytes: a user limited further could not be served at all.
        written = json.dumps(self.as_claim(), separators=(",", ":"))
        if len(written) > LIMITS_CLAIM_BYTES:
            raise ValueError(
                f"must take at most {LIMITS_CLAIM_BYTES:,} bytes written as JSON, all "
                f"dimensions together, not {len(written):,}: every access token of the "
                "user carries them"
            )
        return self

    def as_claim(self) -> dict[str, list[str]] | None:
        limits = {k: sorted(set(v)) for k, v in self.model_dump().items() if v is not None}
        return limits or None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name
    password: Password
    role: Role
    limits: Limits | None = None


# A change's fields that may be left out but not be null: refused, and so documented.
_NOT_NULL = ("name", "password", "role", "disabled")


class UserUpdate(BaseModel):
    """Only the fields present change; ``limits: null`` lifts every limit, and no other
    field may be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_nullable(*_NOT_NULL))

    # Left out, they stay; null could only mean "none", which none of them can be.
    name: Name | None = None
    password: Password | None = None
    role: Role | None = None
    limits: Limits | None = None
    # Strictly true or false: a guess ("yes", 1) never locks a person out.
    disabled: StrictBool | None = None

    _not_null = field_validator(*_NOT_NULL)(refuse_null)


class UserOut(BaseModel):
    id: str
    tenant_id: str
    email: str
    name: str
    role: str
    scopes: list[str]
    limits: dict[str, list[str]] | None
    disabled: bool
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    users: list[UserOut]
