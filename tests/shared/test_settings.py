"""Refused settings name the environment variable an operator sets, never the value."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from services.gateway.config import Settings as GatewaySettings
from services.ingest.config import Settings as IngestSettings
from services.metrics.config import Settings as MetricsSettings
from services.targets.config import Settings as TargetsSettings
from shared.settings import InvalidSettings, env_var_names, variable_of


@pytest.mark.parametrize(
    ("settings", "variable", "reason"),
    [
        (GatewaySettings, "LODESTAR_GATEWAY_TOKEN_TTL_SECONDS", "valid integer"),
        (GatewaySettings, "LODESTAR_MAX_BODY_BYTES", "valid integer"),
        (IngestSettings, "LODESTAR_INGEST_PORT", "valid integer"),
        (MetricsSettings, "LODESTAR_METRICS_PORT", "valid integer"),
        (TargetsSettings, "LODESTAR_TARGETS_PORT", "valid integer"),
        (IngestSettings, "LODESTAR_INGEST_CREDENTIALS_KEY", "must be a Fernet key"),
    ],
)
def test_a_refused_setting_is_named_by_its_variable_without_its_value(
    settings: type[BaseSettings], variable: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "SECRET-value")
    with pytest.raises(InvalidSettings) as refused:
        settings()
    message = str(refused.value)
    assert message.startswith(f"{variable}: ") and reason in message
    assert "SECRET" not in message


def test_every_refusal_is_told_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LODESTAR_GATEWAY_PORT", "x")
    monkeypatch.setenv("LODESTAR_RATE_LIMIT_BURST", "0")
    with pytest.raises(InvalidSettings) as refused:
        GatewaySettings()
    assert sorted(str(refused.value).split("; ")) == [
        "LODESTAR_GATEWAY_PORT: Input should be a valid integer, unable to parse string as an"
        " integer",
        "LODESTAR_RATE_LIMIT_BURST: Input should be greater than or equal to 1",
    ]


def test_each_setting_has_one_variable() -> None:
    assert variable_of(GatewaySettings, "database_url") == "DATABASE_URL"
    assert variable_of(GatewaySettings, "port") == "LODESTAR_GATEWAY_PORT"
    assert "LODESTAR_GATEWAY_SIGNING_KEYS_KEY" in env_var_names(GatewaySettings)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://bob:S3cretPW@127.0.0.1:notaport/db", "a port is no number"),
        ("postgresql://bob:S3cretPW@[::1/db", "a host is no name or [IPv6] address"),
        ("postgresql://bob:S3cretPW@db:99999/db", "a port is no number from 1 to 65535"),
        ("postgresql://bob:S3cretPW@db:0/db", "a port is no number from 1 to 65535"),
        # Nothing of the URL is quoted, not even its port.
        ("postgresql://bob@db:port-S3cretPW/db", "a port is no number"),
        ("postgresql://bob@h1:5432,h2:S3cretPW/db", "a port is no number"),
        ("mysql://bob:S3cretPW@db/db", "must be a postgresql:// URL"),
        ("postgres ql://bob:S3cretPW@db/db", "must be a postgresql:// URL"),
    ],
)
def test_a_database_url_that_is_none_is_refused_at_start_without_its_password(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(InvalidSettings) as refused:
        MetricsSettings()
    message = str(refused.value)
    assert message.startswith("DATABASE_URL: ") and reason in message
    assert "S3cretPW" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@/lodestar?host=/tmp/pg&port=5432",
        "postgres://u:p@db.internal:6432/lodestar",
        "postgresql+asyncpg://u@[::1]:5432/lodestar",
        # libpq's failover: several hosts.
        "postgresql://u:p@h1:5432,h2:5433,[::1]/lodestar?target_session_attrs=read-write",
    ],
)
def test_database_urls_as_libpq_takes_them_are_kept(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert MetricsSettings().database_url == url


@pytest.mark.parametrize(
    ("servers", "reason"),
    [
        ("kafka://u:S3CRET@h:9092", "broker 1 is no host:port"),
        ("127.0.0.1:9092,127.0.0.1:abc", "broker 2 is no host:port"),
        ("broker", "broker 1 is no host:port"),
        ("h:0", "broker 1 is no host:port"),
    ],
)
def test_brokers_that_are_none_are_refused_at_start_without_the_value(
    servers: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", servers)
    with pytest.raises(InvalidSettings) as refused:
        TargetsSettings()
    assert str(refused.value).startswith(f"KAFKA_BOOTSTRAP_SERVERS: {reason}")
    assert "S3CRET" not in str(refused.value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-0.kafka:9092, [::1]:19092")
    TargetsSettings()


def test_a_log_level_that_is_none_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LODESTAR_LOG_LEVEL", "bogus")
    with pytest.raises(InvalidSettings, match="LODESTAR_LOG_LEVEL: must be one of DEBUG, INFO"):
        IngestSettings()
    monkeypatch.setenv("LODESTAR_LOG_LEVEL", "debug")
    assert IngestSettings().log_level == "debug"
