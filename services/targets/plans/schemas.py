from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.money import DecimalString


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    year: int
    metric: str
    currency: str | None
    # Written out in digits, as every amount of the API: never 5.00E+6.
    amount: DecimalString
    status: str
    version: int
    created_at: datetime | None


class PlanList(BaseModel):
    plans: list[PlanOut]
