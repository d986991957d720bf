from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErasureConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: str | None = Field(
        default=None, description="The tenant id again: erasure cannot be undone"
    )


class ErasureOut(BaseModel):
    id: str
    tenant_id: str
    status: Literal["running", "done"] = Field(description="done once every service confirmed")
    services: dict[str, Literal["pending", "done"]]
    rows_deleted: dict[str, int] = Field(description="Per service that has confirmed")
    requested_at: datetime
    finished_at: datetime | None
