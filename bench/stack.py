"""A whole Lodestar stack for a benchmark: the launcher's own code on free ports."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.embedded import free_ports
from devstack.launcher import Launcher
from devstack.stack import SERVICES, StackConfig
from shared.scopes import TENANT_SCOPES


@dataclass(frozen=True)
class BenchTenant:
    tenant_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextlib.contextmanager
def running_stack() -> Iterator[StackConfig]:
    """Starts PostgreSQL, the broker and the four services; stops all of it after."""
    home = Path(tempfile.mkdtemp(prefix="lodestar-bench-"))
    saved = dict(os.environ)
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        if not os.environ.get(f"BENCH_{name}"):
            os.environ.pop(name, None)
    os.environ["LODESTAR_HOME"] = str(home)
    *service_ports, broker_port = free_ports(len(SERVICES) + 1)
    os.environ["LODESTAR_BROKER_PORT"] = str(broker_port)
    os.environ["LODESTAR_LOG_LEVEL"] = "WARNING"
    # One bench client polls and queries far above the production default of 50 a second:
    # the limiter stays in the measured path but never refuses.
    os.environ["LODESTAR_RATE_LIMIT_PER_SECOND"] = "1000000"
    os.environ["LODESTAR_RATE_LIMIT_BURST"] = "1000000"
    for service, port in zip(SERVICES, service_ports, strict=True):
        os.environ[f"LODESTAR_{service.upper()}_PORT"] = str(port)
    launcher = Launcher(home)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    # A benchmark killed by a signal still stops PostgreSQL and the broker.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        yield launcher.start()
    finally:
        launcher.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        # A run leaves hundreds of megabytes of database and logs; nothing reads them after.
        shutil.rmtree(home, ignore_errors=True)


def new_tenant(config: StackConfig) -> BenchTenant:
    with httpx.Client(base_url=config.url("gateway"), timeout=30) as client:
        admin = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(config.admin.client_id, config.admin.client_secret),
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {admin}"}
        tenant = client.post(
            "/v1/tenants", json={"name": f"bench-{secrets.token_hex(3)}"}, headers=auth
        ).json()["id"]
        created = client.post(
            f"/v1/tenants/{tenant}/clients",
            json={"name": "bench", "scopes": list(TENANT_SCOPES)},
            headers=auth,
        ).json()
        token = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(created["client_id"], created["client_secret"]),
        ).json()["access_token"]
    return BenchTenant(tenant, token)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
