"""Settings of the targets service: the shared ones plus LODESTAR_TARGETS_*."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LODESTAR_TARGETS_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8003


@lru_cache
def get_settings() -> Settings:
    return Settings()
