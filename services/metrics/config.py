"""Settings of the metrics service: the shared ones plus LODESTAR_METRICS_*."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LODESTAR_METRICS_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002

    consumer_group: str = "lodestar-metrics"


@lru_cache
def get_settings() -> Settings:
    return Settings()
