"""The demo seller `make run` loads: a tenant, a client, and two months of events.

Everything goes through the public API, as an ERP would push it. Events are
deterministic by date, so loading again on a second `make run` only counts duplicates.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import AdminCredentials, write_private
from shared.scopes import TENANT_SCOPES

DEMO_SCOPES = list(TENANT_SCOPES)
STORES = [
    ("amazon", "acme-us", "US", "USD"),
    ("amazon", "acme-mx", "MX", "MXN"),
    ("mercadolibre", "acme-meli-mx", "MX", "MXN"),
]
SKUS = [("LAMP-01", "home", "24.99"), ("MUG-02", "kitchen", "12.50"), ("FAN-03", "home", "39.00")]
DAYS = 60


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    client_id: str
    client_secret: str


def _money(amount: str, currency: str) -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def demo_events(today: date) -> list[dict[str, Any]]:
    """Order lines over the last 60 days in three stores, and the MXN rates to read them.

    Each day's events are drawn from that day alone, so a later `make run` pushes the
    days it shares with an earlier one unchanged (duplicates), and adds only new days.
    """
    events: list[dict[str, Any]] = []
    start = today - timedelta(days=DAYS)
    # From the day before the first: an order at 02:00 UTC is on the day before in
    # Mexico City, which needs its rate too, or the first totals come out null.
    for day in range(-1, DAYS):
        current = start + timedelta(days=day)
        rng = random.Random(f"demo-{current.isoformat()}")
        events.append(
            {
                "event_id": f"demo-fx-MXN-{current.isoformat()}",
                "type": "fx_rate",
                "version": 1,
                "source": {"platform": "erp", "store_id": "erp", "marketplace": "US"},
                "occurred_at": f"{current.isoformat()}T00:00:00Z",
                "payload": {
                    "date": current.isoformat(),
                    "base": "USD",
                    "quote": "MXN",
                    "rate": f"{17 + rng.random():.4f}",
                },
            }
        )
        if day < 0:
            continue
        for platform, store, marketplace, currency in STORES:
            for n in range(rng.randint(3, 9)):
                sku, category, price = rng.choice(SKUS)
                if currency == "MXN":
                    price = f"{float(price) * 17.5:.2f}"
                purchased = datetime(
                    current.year, current.month, current.day, rng.randint(0, 23), 15, tzinfo=UTC
                )
                order_id = f"{store}-{current.isoformat()}-{n}"
                status = rng.choices(["delivered", "shipped", "cancelled"], [80, 15, 5])[0]
                events.append(
                    {
                        "event_id": f"demo-{order_id}-1",
                        "type": "order_line",
                        "version": 1,
                        "source": {
                            "platform": platform,
                            "store_id": store,
                            "marketplace": marketplace,
                        },
                        "occurred_at": purchased.isoformat(),
                        "payload": {
                            "order_id": order_id,
                            "line_id": "1",
                            "sku": sku,
                            "quantity": rng.randint(1, 3),
                            "unit_price": _money(price, currency),
                            "shipping_price": _money("0.00", currency),
                            "status": status,
                            "purchased_at": purchased.isoformat(),
                            "category": category,
                            "fulfillment_channel": "platform",
                        },
                    }
                )
    return events


DEMO_NAME = "Acme Demo Seller"


def _ensure_tenant(client: httpx.Client, admin: AdminCredentials, path: Path) -> DemoTenant:
    if path.exists():
        data = json.loads(path.read_text())
        return DemoTenant(data["tenant_id"], data["client_id"], data["client_secret"])
    token = _token(client, admin.client_id, admin.client_secret)
    auth = {"Authorization": f"Bearer {token}"}
    # A start stopped between making the tenant and its client left the tenant without
    # credentials here: it is the demo seller still, not a second one to make.
    listed = client.get("/v1/tenants", params={"limit": 500}, headers=auth)
    listed.raise_for_status()
    made = [t["id"] for t in listed.json()["tenants"] if t["name"] == DEMO_NAME]
    if made:
        tenant_id = made[0]
    else:
        response = client.post(
            "/v1/tenants", json={"name": DEMO_NAME, "reporting_currency": "USD"}, headers=auth
        )
        response.raise_for_status()
        tenant_id = response.json()["id"]
    response = client.post(
        f"/v1/tenants/{tenant_id}/clients",
        json={"name": "demo ERP", "scopes": DEMO_SCOPES},
        headers=auth,
    )
    response.raise_for_status()
    body = response.json()
    demo = DemoTenant(tenant_id, body["client_id"], body["client_secret"])
    write_private(path, json.dumps(demo.__dict__))
    return demo


def _token(client: httpx.Client, client_id: str, client_secret: str) -> str:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, client_secret)
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def load_demo(
    gateway_url: str,
    admin: AdminCredentials,
    home: Path,
    transport: httpx.BaseTransport | None = None,
) -> DemoTenant:
    """Creates the demo seller once and pushes its events (again: duplicates only).

    A demo seller erased since, or whose client was revoked, is made again: its saved
    client no longer gets a token, and every start would otherwise stop on it."""
    path = home / "demo-credentials.json"
    with httpx.Client(base_url=gateway_url, timeout=60.0, transport=transport) as client:
        demo = _ensure_tenant(client, admin, path)
        try:
            token = _token(client, demo.client_id, demo.client_secret)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 401:
                raise
            path.unlink()
            demo = _ensure_tenant(client, admin, path)
            token = _token(client, demo.client_id, demo.client_secret)
        push_in_batches(client, token, demo_events(datetime.now(UTC).date()))
        return demo


# The longest the loader waits when told to slow down, whatever Retry-After says.
MAX_WAIT_SECONDS = 5.0


def push_in_batches(client: httpx.Client, token: str, events: list[dict[str, Any]]) -> None:
    """Pushes ``events`` 5,000 a request (the most one takes); a request over the body
    limit (``LODESTAR_MAX_BODY_BYTES`` lowered) goes again in halves, and one over the
    rate limit again after the wait it is told."""
    batches = [events[start : start + 5000] for start in range(0, len(events), 5000)]
    while batches:
        batch = batches.pop(0)
        response = client.post(
            "/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 413 and len(batch) > 1:
            batches[:0] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
            continue
        if response.status_code == 429:
            # Many small requests meet the rate limit: the batch waits its turn.
            batches.insert(0, batch)
            time.sleep(min(float(response.headers.get("retry-after", "1")), MAX_WAIT_SECONDS))
            continue
        response.raise_for_status()


if __name__ == "__main__":
    import os

    from devstack.launcher import port_from_env
    from devstack.stack import DEFAULT_PORTS
    from devstack.stack import AdminCredentials as Creds

    home = Path(os.environ.get("LODESTAR_HOME", ".lodestar")).resolve()
    # The gateway `make run` started with the same settings.
    port = port_from_env("LODESTAR_GATEWAY_PORT", DEFAULT_PORTS["gateway"])
    url = os.environ.get("LODESTAR_GATEWAY_URL", f"http://127.0.0.1:{port}")
    try:
        tenant = load_demo(url, Creds.load_or_create(home / "dev-credentials.json"), home)
    except httpx.TransportError as exc:
        sys.exit(f"no Lodestar answers at {url} ({exc}): start it with make run first")
    print(json.dumps(tenant.__dict__), file=sys.stdout)
