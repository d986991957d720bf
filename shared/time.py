"""Time zones of marketplaces and the one way a timestamp becomes a local date."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

# CONTRACT §3: the default local time zone of each marketplace.
MARKETPLACE_TIME_ZONES: dict[str, str] = {
    # CONTRACT §3
    "US": "America/Los_Angeles",
    "CA": "America/Los_Angeles",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "JP": "Asia/Tokyo",
    "GB": "Europe/London",
    "DE": "Europe/Berlin",
    # The other markets of Amazon, Mercado Libre, Walmart and TikTok Shop: each in the
    # zone its seller reports are cut in (a country's capital, where it has several).
    "FR": "Europe/Paris",
    "IT": "Europe/Rome",
    "ES": "Europe/Madrid",
    "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels",
    "SE": "Europe/Stockholm",
    "PL": "Europe/Warsaw",
    "IE": "Europe/Dublin",
    "TR": "Europe/Istanbul",
    "AE": "Asia/Dubai",
    "SA": "Asia/Riyadh",
    "EG": "Africa/Cairo",
    "IN": "Asia/Kolkata",
    "SG": "Asia/Singapore",
    "AU": "Australia/Sydney",
    "CN": "Asia/Shanghai",
    "ID": "Asia/Jakarta",
    "TH": "Asia/Bangkok",
    "MY": "Asia/Kuala_Lumpur",
    "VN": "Asia/Ho_Chi_Minh",
    "PH": "Asia/Manila",
    "KR": "Asia/Seoul",
    "AR": "America/Argentina/Buenos_Aires",
    "CO": "America/Bogota",
    "CL": "America/Santiago",
    "PE": "America/Lima",
    "UY": "America/Montevideo",
}
FALLBACK_TIME_ZONE = "UTC"
# ISO 3166-1 alpha-2: a marketplace is a country (CONTRACT §3).
_ISO_3166 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_ISO_3166.split())


def country_code(value: object) -> str:
    """A marketplace's code: an ISO 3166 country, which names its default time zone. An
    unknown code would silently be cut in UTC, so it is refused."""
    if value == "UK":
        raise ValueError("UK is no ISO 3166 code: the United Kingdom is GB")
    if not isinstance(value, str) or value not in COUNTRIES:
        raise ValueError("must be an ISO 3166 country code such as US")
    return value


@lru_cache(maxsize=1)
def time_zone_names() -> frozenset[str]:
    """The IANA time zone names: tzdata's list of them. ``available_timezones()`` also
    lists every TZif file of the host's zoneinfo (``localtime``, and ``posix/`` and
    ``right/`` copies on some systems); ``Factory`` is IANA's placeholder for no zone."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split()) - {"Factory"} - READ_AS_ABBREVIATIONS


# Zones whose names PostgreSQL reads as abbreviations of a fixed offset ('CET' is +01:00
# all year there, with summer time here): a store's facts dated again in PostgreSQL when
# its zone changes would fall an hour off in summer. A city's zone says the same.
READ_AS_ABBREVIATIONS = frozenset({"CET", "EET", "MET", "WET"})


def time_zone_name(value: object) -> str:
    """A time zone a tenant or store may name: an IANA zone. A file of the host's zoneinfo
    that names no zone (``localtime``) would cut dates in whatever the host runs in."""
    if isinstance(value, str) and value in READ_AS_ABBREVIATIONS:
        raise ValueError("must be a city's IANA time zone, such as Europe/Paris for CET")
    if not isinstance(value, str) or value not in time_zone_names():
        raise ValueError("must be an IANA time zone such as America/New_York")
    return value


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone as the ``tzdata`` package has it, never the system's files: PostgreSQL,
    which dates facts again when a store's zone changes, keeps a copy of the same
    release. An older system copy (2025b, before British Columbia's change) put a
    Vancouver store's 07:30 UTC on one day here and on the next there."""
    with resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


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
# A calendar date as the contract writes it: Python's fromisoformat alone would also
# read 20260131 or 2026-W05-6. ASCII digits to the very end (\d is any script's, and $
# matches before a last line break).
DATE_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
DATE_RANGE = f"between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"


def in_date_range(day: date) -> bool:
    return EARLIEST_DATE <= day <= LATEST_DATE
