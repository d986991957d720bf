from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlmodel import Field, SQLModel

from shared.time import utcnow


class TargetPlan(SQLModel, table=True):
    __tablename__ = "target_plans"

    tenant_id: str = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True, default_factory=uuid.uuid4)
    name: str
    year: int
    metric: str
    currency: str | None = None
    amount: Decimal
    status: str = "draft"
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
