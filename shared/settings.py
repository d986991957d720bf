"""Configuration shared by every service, read from the environment only.

Each service's own ``config.Settings`` extends :class:`ServiceSettings`; the fields
here keep their plain, documented names (``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``,
``LODESTAR_GATEWAY_URL`` ...) so one environment serves all four processes.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The platform-admin client's id when LODESTAR_ADMIN_CLIENT_ID is unset (CONTRACT §1).
DEFAULT_ADMIN_CLIENT_ID = "lodestar-admin"


def env_alias(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _a_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) <= 65535


def _host_problem(host: str, port_required: bool) -> str | None:
    """Why ``host`` is no ``name[:port]`` or ``[IPv6][:port]``, if it is not. A broker
    needs both (``port_required``); libpq takes either alone (``:5433`` with a socket
    directory in ``?host=``)."""
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket or not address or (port and not port.startswith(":")):
            return "a host is no name or [IPv6] address"
        port = port[1:]
    else:
        name, _, port = host.partition(":")
        if (port_required and not name) or any(c in name for c in "[]/@") or ":" in port:
            return "a host is no name or [IPv6] address"
    if (port or port_required) and not _a_port(port):
        return "a port is no number from 1 to 65535"
    return None


def database_url_problem(url: str) -> str | None:
    """Why ``url`` is no PostgreSQL URL, if it is not: found at start rather than in a
    60-line traceback of the first connection, and told without any of the URL, which
    may hold a password. Several hosts (``h1:5432,h2:5432``) are libpq's failover."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.partition("+")[0] not in ("postgresql", "postgres"):
        return "must be a postgresql:// URL (postgresql://user:password@host:port/database)"
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    for host in hosts.split(",") if hosts else ():
        if problem := _host_problem(host, port_required=False):
            return problem
    return None


class InvalidSettings(ValueError):
    """Settings refused: each by its environment variable and reason, never its value."""


class ServiceSettings(BaseSettings):
    """Settings every service reads; a service subclass adds its own with its prefix."""

    # Settings hold secrets (keys, passwords in URLs): a refused value is named by its
    # variable and reason, never echoed into the log.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            # pydantic names a field ("token_ttl_seconds"); an operator sets a variable.
            raise InvalidSettings(
                "; ".join(_refusal(type(self), refused) for refused in error.errors())
            ) from None

    database_url: str = Field(
        default="postgresql://postgres@localhost:5432/lodestar",
        validation_alias=env_alias("DATABASE_URL"),
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=env_alias("KAFKA_BOOTSTRAP_SERVERS")
    )
    # Whether a service creates the topics it finds missing (one replica, 4 partitions):
    # the embedded broker and compose's need it; a cluster whose topics are declared
    # (deploy/k8s, with three replicas) must not be raced by replicas of one.
    kafka_create_topics: bool = Field(
        default=True, validation_alias=env_alias("LODESTAR_KAFKA_CREATE_TOPICS")
    )
    gateway_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias=env_alias("LODESTAR_GATEWAY_URL")
    )
    ingest_url: str = Field(
        default="http://127.0.0.1:8001", validation_alias=env_alias("LODESTAR_INGEST_URL")
    )
    metrics_url: str = Field(
        default="http://127.0.0.1:8002", validation_alias=env_alias("LODESTAR_METRICS_URL")
    )
    targets_url: str = Field(
        default="http://127.0.0.1:8003", validation_alias=env_alias("LODESTAR_TARGETS_URL")
    )
    # The issuer tokens carry and services demand; defaults to the public gateway URL.
    issuer: str = Field(default="", validation_alias=env_alias("LODESTAR_ISSUER"))
    audience: str = Field(default="lodestar", validation_alias=env_alias("LODESTAR_AUDIENCE"))
    # Where services fetch the signing keys; defaults to the gateway's JWKS.
    jwks_url: str = Field(default="", validation_alias=env_alias("LODESTAR_JWKS_URL"))
    # An external OpenID provider signing users in instead of the gateway's page: its
    # issuer, its JWKS, the claim carrying the tenant. Empty issuer: none. The gateway
    # keeps issuing client-credentials tokens for ERPs either way.
    oidc_issuer: str = Field(default="", validation_alias=env_alias("LODESTAR_OIDC_ISSUER"))
    oidc_jwks_url: str = Field(default="", validation_alias=env_alias("LODESTAR_OIDC_JWKS_URL"))
    oidc_tenant_claim: str = Field(
        default="tenant", validation_alias=env_alias("LODESTAR_OIDC_TENANT_CLAIM")
    )
    log_level: str = Field(default="INFO", validation_alias=env_alias("LODESTAR_LOG_LEVEL"))
    otlp_endpoint: str = Field(
        default="", validation_alias=env_alias("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    # Topic names get this prefix; tests use it to keep their topics apart.
    topic_prefix: str = Field(default="", validation_alias=env_alias("LODESTAR_TOPIC_PREFIX"))
    # Request bodies above this many bytes get 413 (0 turns the check off). 16 MiB holds a
    # push of the ingest maximum of 5,000 events, or a CSV upload of as many rows, with room.
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=0, validation_alias=env_alias("LODESTAR_MAX_BODY_BYTES")
    )
    # Per client and per process: a token bucket refilled at this rate (0 turns limiting
    # off) and holding at most ``rate_limit_burst`` requests.
    rate_limit_per_second: float = Field(
        default=50.0, ge=0, validation_alias=env_alias("LODESTAR_RATE_LIMIT_PER_SECOND")
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, validation_alias=env_alias("LODESTAR_RATE_LIMIT_BURST")
    )

    @field_validator("database_url")
    @classmethod
    def _a_postgresql_url(cls, value: str) -> str:
        if problem := database_url_problem(value):
            raise ValueError(f"DATABASE_URL: {problem}")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        # Without this a bad list starts the service, which then logs it every second.
        for place, broker in enumerate((b.strip() for b in value.split(",")), 1):
            if _host_problem(broker, port_required=True):
                raise ValueError(
                    f"KAFKA_BOOTSTRAP_SERVERS: broker {place} is no host:port "
                    "(brokers are comma-separated host:port, with no scheme or user)"
                )
        return value

    @field_validator("log_level")
    @classmethod
    def _a_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"LODESTAR_LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}")
        return value

    @property
    def effective_issuer(self) -> str:
        return (self.issuer or self.gateway_url).rstrip("/")

    @property
    def effective_jwks_url(self) -> str:
        return self.jwks_url or f"{self.gateway_url.rstrip('/')}/.well-known/jwks.json"


def variable_of(settings_cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable a setting is read from (upper case)."""
    alias = settings_cls.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0]).upper()
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(settings_cls.model_config.get("env_prefix", "") or "")
    return f"{prefix}{field_name}".upper()


def env_var_names(settings_cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads (upper case).

    Deploy manifests are checked against this, so a new setting cannot be
    forgotten in docker-compose or Kubernetes.
    """
    return {variable_of(settings_cls, name) for name in settings_cls.model_fields}


def _refusal(settings_cls: type[BaseSettings], refused: Any) -> str:
    """``VARIABLE: reason`` for one of pydantic's errors (its ``loc`` is a field's name,
    or the alias it was given under)."""
    place = str(refused["loc"][0]) if refused["loc"] else ""
    variable = place.upper()
    if place in settings_cls.model_fields:
        variable = variable_of(settings_cls, place)
    reason = str(refused["msg"]).removeprefix("Value error, ")
    # A validator of ours names the variable itself.
    return reason if reason.startswith(f"{variable}:") else f"{variable}: {reason}"
