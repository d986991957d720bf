from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.http import port_is_usable
from shared.money import CurrencyCode
from shared.time import time_zone_name

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    reporting_currency: CurrencyCode = "USD"
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else time_zone_name(value)


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    reporting_currency: str
    timezone: str | None
    created_at: datetime | None


class TenantList(BaseModel):
    tenants: list[TenantOut]


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: Annotated[list[str], Field(min_length=1, max_length=20)]
    # Strictly true or false: a guess ("on", 1) never makes a client without a secret.
    public: StrictBool = Field(
        default=False,
        description="A frontend: no secret; signs users in with authorization code + PKCE",
    )
    redirect_uris: Annotated[list[str], Field(max_length=10)] = Field(
        default_factory=list,
        description="Where /oauth/authorize may send codes: https, or http on localhost",
    )

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            # RFC 3986: a URI is printable ASCII (an internationalised host in its xn--
            # form); a space or an invisible character would read as another address.
            if not all("!" <= c <= "~" for c in uri):
                raise ValueError(f"{uri!r}: must be printable ASCII, without spaces")
            parts = urlsplit(uri)
            local = parts.hostname in ("localhost", "127.0.0.1", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and local):
                raise ValueError(f"{uri}: must be https (or http on localhost)")
            if parts.fragment or "#" in uri or not parts.hostname:
                raise ValueError(f"{uri}: must be an absolute URI without a fragment")
            if not port_is_usable(parts):
                raise ValueError(f"{uri}: its port must be a number from 1 to 65535")
            # What makes a URI send a code elsewhere than it reads: credentials before
            # the host, a wildcard taken literally, a path that climbs out of itself.
            if parts.username is not None or parts.password is not None or "@" in parts.netloc:
                raise ValueError(f"{uri}: must not hold a user name or password")
            if "*" in parts.netloc:
                raise ValueError(f"{uri}: must name its host, without a wildcard")
            if {".", ".."} & set(unquote(parts.path).split("/")):
                raise ValueError(f"{uri}: its path must not hold . or .. segments")
        return uris

    @model_validator(mode="after")
    def _public_needs_redirect(self) -> ClientCreate:
        if self.public and not self.redirect_uris:
            raise PydanticCustomError(
                "payload_conflict",
                "a public client needs at least one redirect_uri",
                {"at": "redirect_uris"},
            )
        return self


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str | None = Field(
        description="Shown once; only a hash is stored. None for a public client."
    )
    scopes: list[str]
    tenant_id: str
    name: str
    public: bool = False
    redirect_uris: list[str] = Field(default_factory=list)


class ClientOut(BaseModel):
    """A client as its tenant's admins see it: never its secret."""

    client_id: str
    name: str
    scopes: list[str]
    public: bool
    redirect_uris: list[str]
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None


class ClientList(BaseModel):
    clients: list[ClientOut]
