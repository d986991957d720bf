from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

from shared.money import plain


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    year: int
    metric: str
    currency: str | None
    # Written out in digits, as every amount of the API: never 5.00E+6. Read back as
    # stored, however large: no bound of an event's input applies to a stored plan.
    amount: Annotated[Decimal, PlainSerializer(plain, return_type=str)]
    status: str
    version: int
    created_at: datetime | None


class PlanList(BaseModel):
    plans: list[PlanOut]
