from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.events import EventTime
from shared.money import CurrencyCode
from shared.time import time_zone_name


class KpiSettings(BaseModel):
    """How this tenant's KPIs are defined where the contract leaves a choice (口径)."""

    model_config = ConfigDict(extra="forbid")

    # Strict: "yes", "0" or 1 would otherwise pass as a boolean, and change every answer.
    gmv_includes_tax: StrictBool = Field(default=False, description="Add item tax to GMV.")
    gmv_includes_shipping: StrictBool = Field(default=True, description="Keep shipping in GMV.")
    refunds_by: Literal["refunded_at", "purchase_date"] = Field(
        default="refunded_at",
        description="Date refunds count on: their own refunded_at, or their order's purchase "
        "date (converted at that date's rate).",
    )
    reporting_currency: CurrencyCode | None = Field(
        default=None,
        description="Currency of answers when a query names none; when unset, the tenant's "
        "reporting currency (set when it was created).",
    )


class KpiSettingsOut(KpiSettings):
    updated_at: datetime | None = None


class KpiSettingsIn(KpiSettings):
    """A PUT body: every setting it leaves out takes its default. What GET answered may
    be sent back changed, ``updated_at`` included (the server sets it)."""

    # Read as strictly as an event's timestamps: seconds, a bare date or no offset
    # were taken, while "x" was refused naming that very rule.
    updated_at: EventTime | None = Field(
        default=None,
        description="Read only: the server sets it. Sent back, it is ignored, but must be "
        "what GET answered (a date-time) or null.",
    )


class StoreZone(BaseModel):
    """A store's own time zone for local dates; null returns it to its marketplace's."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(description="An IANA zone such as America/New_York, or null")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else time_zone_name(value)


class StoreZoneListed(BaseModel):
    store_id: str
    timezone: str | None


class StoreZoneOut(StoreZoneListed):
    """A change's answer: what it moved, which a listing has nothing to say about."""

    moved: dict[str, int] = Field(
        default_factory=dict, description="Facts rebucketed by this change, by kind"
    )


class StoreZoneList(BaseModel):
    stores: list[StoreZoneListed]
