from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    reporting_currency: str = "USD"
    timezone: str | None = None

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("must be a three-letter ISO 4217 code such as USD")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as America/Mexico_City") from None
        return value


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


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; only a hash is stored.")
    scopes: list[str]
    tenant_id: str
    name: str
