"""Settings of the ingest service: the shared ones plus LODESTAR_INGEST_*."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.sealing import Sealer
from shared.settings import ServiceSettings, env_alias

CREDENTIALS_KEY_VARIABLE = "LODESTAR_INGEST_CREDENTIALS_KEY"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LODESTAR_INGEST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001

    max_events_per_request: int = 5000
    relay_batch_size: int = 2000
    relay_poll_seconds: float = 1.0
    relay_linger_ms: int = 5
    outbox_retention_hours: int = 24
    # How long a replay with the same Idempotency-Key gets the first answer back.
    idempotency_retention_hours: int = 168
    # How often the relay deletes sent outbox rows and expired idempotency keys.
    cleanup_interval_seconds: float = 300.0
    # A broker that keeps its log in memory (the embedded Tansu) loses, when it restarts,
    # what consumers had not read yet: at start the relay then publishes again every row
    # sent within the retention window. Consumers are idempotent, so the repeats change
    # nothing. Off for a durable Kafka.
    republish_on_start: bool = Field(
        default=False, validation_alias=env_alias("LODESTAR_INGEST_REPUBLISH_ON_START")
    )
    # With republishing on: how often the relay asks whether the broker lost its log
    # (restarted) while it had nothing to send.
    broker_check_seconds: float = 5.0
    # Fernet key (urlsafe base64 of 32 bytes) sealing platform credentials at rest; a
    # secret. Unset, connections cannot be stored (503 naming the variable).
    credentials_key: str = Field(default="", validation_alias=env_alias(CREDENTIALS_KEY_VARIABLE))

    @field_validator("credentials_key")
    @classmethod
    def _a_fernet_key(cls, value: str) -> str:
        Sealer(value, CREDENTIALS_KEY_VARIABLE)
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
