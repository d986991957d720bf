"""Settings of the gateway service: the shared ones plus LODESTAR_GATEWAY_*."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_ADMIN_CLIENT_ID, ServiceSettings, env_alias


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


@lru_cache
def get_settings() -> Settings:
    return Settings()
