from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Column, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.time import utcnow


class OAuthClient(SQLModel, table=True):
    __tablename__ = "oauth_clients"

    client_id: str = Field(primary_key=True)
    tenant_id: str | None = None
    name: str
    # None for a public client (a frontend, which proves itself with PKCE instead).
    secret_hash: str | None = None
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    redirect_uris: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    public: bool = False
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class SigningKey(SQLModel, table=True):
    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True)
    private_jwk: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # Published from its creation; signs from then on, once its start has come.
    signs_from: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None
