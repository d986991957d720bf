from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    year: int
    metric: str
    currency: str | None
    amount: Decimal
    status: str
    version: int
    created_at: datetime | None


class PlanList(BaseModel):
    plans: list[PlanOut]
