from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.openapi import not_nullable


def _required_confirm(schema: dict[str, Any]) -> None:
    not_nullable("confirm")(schema)
    schema["required"] = ["confirm"]


class ErasureConfirm(BaseModel):
    # Required to a client (422 naming `confirm` without it); optional here so that the
    # route says so itself, after the token is checked.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_required_confirm)

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
