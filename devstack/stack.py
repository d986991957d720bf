"""The wiring of the four services, shared by the launcher and the test suite.

Both build each service's environment here, so `make run` and `make test` run the
same configuration: one database (a schema per service), one broker, the gateway as
issuer and JWKS source, and the other services reached by URL.
"""

from __future__ import annotations

import importlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from shared.sealing import Sealer
from shared.settings import DEFAULT_ADMIN_CLIENT_ID

SERVICES: tuple[str, ...] = ("gateway", "ingest", "metrics", "targets")
DEFAULT_PORTS: dict[str, int] = {"gateway": 8000, "ingest": 8001, "metrics": 8002, "targets": 8003}


@dataclass(frozen=True)
class AdminCredentials:
    client_id: str
    client_secret: str

    @classmethod
    def load_or_create(cls, path: Path) -> AdminCredentials:
        """The embedded default's platform-admin client, created once and kept."""
        if path.exists():
            data = json.loads(path.read_text())
            return cls(client_id=data["client_id"], client_secret=data["client_secret"])
        creds = cls(client_id=DEFAULT_ADMIN_CLIENT_ID, client_secret=secrets.token_urlsafe(32))
        creds.save(path)
        return creds

    def save(self, path: Path) -> None:
        """As CONTRACT §1 has it: ``{"client_id", "client_secret"}``, readable by its
        owner alone."""
        write_private(
            path, json.dumps({"client_id": self.client_id, "client_secret": self.client_secret})
        )


def write_private(path: Path, text: str) -> None:
    """Writes a secret into a file only its owner may read, from the first byte: made
    with the usual umask and tightened after, it was readable by all meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    # touch keeps the mode of a file that was there already.
    path.chmod(0o600)
    path.write_text(text)


def load_or_create_fernet_key(path: Path) -> str:
    """One of the embedded default's sealing keys (of platform credentials, of token
    signing keys), created once and kept: a new key would leave what the old one sealed
    unreadable."""
    if path.exists():
        key = path.read_text().strip()
        try:
            Sealer(key, str(path))
        except ValueError as refused:
            # Said of the file, not of the variable its key stands in for, which is unset.
            raise SystemExit(
                f"{refused}; restore the file, or delete it to have a new key made (what "
                "the old one sealed can then not be read)"
            ) from None
        return key
    key = Fernet.generate_key().decode()
    write_private(path, key)
    return key


@dataclass
class StackConfig:
    database_url: str
    kafka_bootstrap_servers: str
    admin: AdminCredentials
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    host: str = "127.0.0.1"
    topic_prefix: str = ""
    credentials_key: str = ""
    signing_keys_key: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    def common_env(self) -> dict[str, str]:
        """Variables every service reads, by their documented names."""
        env = {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "LODESTAR_GATEWAY_URL": self.url("gateway"),
            "LODESTAR_INGEST_URL": self.url("ingest"),
            "LODESTAR_METRICS_URL": self.url("metrics"),
            "LODESTAR_TARGETS_URL": self.url("targets"),
            "LODESTAR_ISSUER": self.url("gateway"),
            "LODESTAR_TOPIC_PREFIX": self.topic_prefix,
            "LODESTAR_ADMIN_CLIENT_ID": self.admin.client_id,
            "LODESTAR_ADMIN_CLIENT_SECRET": self.admin.client_secret,
        }
        if self.credentials_key:
            env["LODESTAR_INGEST_CREDENTIALS_KEY"] = self.credentials_key
        if self.signing_keys_key:
            env["LODESTAR_GATEWAY_SIGNING_KEYS_KEY"] = self.signing_keys_key
        for service in SERVICES:
            env[f"LODESTAR_{service.upper()}_HOST"] = self.host
            env[f"LODESTAR_{service.upper()}_PORT"] = str(self.ports[service])
        env.update(self.extra_env)
        return env

    def service_env(self, service: str) -> dict[str, str]:
        env = self.common_env()
        env["OTEL_SERVICE_NAME"] = f"lodestar-{service}"
        return env


def service_settings(service: str, config: StackConfig) -> Any:
    """The ``Settings`` object of ``service`` as the launcher's environment would build it."""
    module = importlib.import_module(f"services.{service}.config")
    env = config.service_env(service)
    return module.Settings.model_validate(
        {**env, "host": config.host, "port": config.ports[service]}
    )
