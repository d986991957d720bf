from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Progress(BaseModel):
    tables_done: int
    tables_total: int = Field(description="0 until every service has listed its tables")


class ExportOut(BaseModel):
    id: str
    tenant_id: str
    status: Literal["running", "ready", "failed"]
    progress: Progress
    download_url: str | None = Field(description="Where the zip is, once ready")
    bytes: int | None = Field(description="Size of the zip, once ready")
    sha256: str | None = Field(description="Hex SHA-256 of the zip, once ready")
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ExportList(BaseModel):
    exports: list[ExportOut]
