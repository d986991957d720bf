"""Time zones of marketplaces and the one way a timestamp becomes a local date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

# CONTRACT §3: the default local time zone of each marketplace.
MARKETPLACE_TIME_ZONES: dict[str, str] = {
    "US": "America/Los_Angeles",
    "CA": "America/Los_Angeles",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "JP": "Asia/Tokyo",
    "GB": "Europe/London",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "IT": "Europe/Rome",
    "ES": "Europe/Madrid",
    "CN": "Asia/Shanghai",
}
FALLBACK_TIME_ZONE = "UTC"


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def marketplace_zone(marketplace: str, override: str | None = None) -> ZoneInfo:
    """The zone of a marketplace; ``override`` is a store's own setting."""
    return zone(override or MARKETPLACE_TIME_ZONES.get(marketplace.upper(), FALLBACK_TIME_ZONE))


def local_date(ts: datetime, marketplace: str, override: str | None = None) -> date:
    """The marketplace's calendar date at instant ``ts`` (which must be timezone-aware)."""
    if ts.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return ts.astimezone(marketplace_zone(marketplace, override)).date()


def utcnow() -> datetime:
    return datetime.now(UTC)


# The dates events and queries may name. Shifted to a marketplace's local date or a
# period back, a date near the calendar's ends would leave it and fail later, in the
# consumer, for every event of the batch.
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(2199, 12, 31)
DATE_RANGE = f"between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"


def in_date_range(day: date) -> bool:
    return EARLIEST_DATE <= day <= LATEST_DATE
