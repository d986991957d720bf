"""The OAuth scopes of CONTRACT §2, in one place for every service, tool and test."""

from __future__ import annotations

PLATFORM_ADMIN = "platform:admin"
TENANT_ADMIN = "tenant:admin"
TENANT_SCOPES: tuple[str, ...] = (
    TENANT_ADMIN,
    "connections:manage",
    "ingest:write",
    "kpi:read",
    "alerts:manage",
    "targets:read",
    "targets:write",
    "targets:approve",
)
ALL_SCOPES: tuple[str, ...] = (PLATFORM_ADMIN, *TENANT_SCOPES)
