from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.time import utcnow


class User(SQLModel, table=True):
    """A person of a tenant, signing in through the authorization code flow."""

    __tablename__ = "users"

    id: str = Field(primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id")
    email: str
    name: str
    password_hash: str | None = None
    role: str
    limits: dict[str, list[str]] | None = Field(default=None, sa_column=Column(JSONB))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None

    def token_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"roles": [self.role]}
        if self.limits:
            claims["limits"] = self.limits
        return claims
