"""Settings of the gateway service: the shared ones plus LODESTAR_GATEWAY_*."""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.sealing import Sealer
from shared.settings import DEFAULT_ADMIN_CLIENT_ID, ServiceSettings, env_alias

SIGNING_KEYS_KEY_VARIABLE = "LODESTAR_GATEWAY_SIGNING_KEYS_KEY"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LODESTAR_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000

    # A secret alone is the default client's: an operator who sets only it must not
    # find it silently ignored.
    admin_client_id: str = Field(
        default=DEFAULT_ADMIN_CLIENT_ID, validation_alias=env_alias("LODESTAR_ADMIN_CLIENT_ID")
    )
    admin_client_secret: str = Field(
        default="", validation_alias=env_alias("LODESTAR_ADMIN_CLIENT_SECRET")
    )
    token_ttl_seconds: int = 3600
    proxy_timeout_seconds: float = 30.0
    # Each statement of the gateway's own (tokens, tenants, grants) ends after this long
    # with a 503, even when the database is frozen and cancels nothing by itself: the
    # same bound its proxied routes have by proxy_timeout_seconds.
    statement_timeout_seconds: float = 30.0
    # Web origins whose browser apps (dashboards, agency portals) may call the gateway,
    # comma-separated ("https://app.example.com,http://localhost:5173"), or "*". None by
    # default: without CORS a browser lets no page of another origin read an answer.
    cors_origins: str = ""
    # Fernet key sealing the token signing keys in the database; a secret. Unset, they
    # are kept as they are (with a warning at start): whoever reads a dump could sign
    # tokens for any tenant.
    signing_keys_key: str = Field(default="", validation_alias=env_alias(SIGNING_KEYS_KEY_VARIABLE))

    @field_validator("signing_keys_key")
    @classmethod
    def _a_fernet_key(cls, value: str) -> str:
        Sealer(value, SIGNING_KEYS_KEY_VARIABLE)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_as_browsers_send_them(cls, value: str) -> str:
        for origin in _split(value):
            if origin != "*" and not _is_origin(origin):
                raise ValueError(
                    f"LODESTAR_GATEWAY_CORS_ORIGINS: {origin!r} is no origin a browser "
                    "sends: http(s)://host[:port] in lower case, with no path, trailing "
                    "slash, user or wildcard"
                )
        return value

    @property
    def allowed_origins(self) -> list[str]:
        return _split(self.cors_origins)


# Lower case, as browsers serialise an origin; a host name, IPv4 or [IPv6] address.
_ORIGIN = re.compile(
    r"https?://([a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:(?P<port>[0-9]{1,5}))?"
)


def _is_origin(value: str) -> bool:
    match = _ORIGIN.fullmatch(value)
    return match is not None and (match["port"] is None or 0 < int(match["port"]) <= 65535)


def _split(origins: str) -> list[str]:
    return [origin.strip() for origin in origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
