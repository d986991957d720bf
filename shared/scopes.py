"""The OAuth scopes of CONTRACT §2, in one place for every service, tool and test."""

from __future__ import annotations

PLATFORM_ADMIN = "platform:admin"
TENANT_ADMIN = "tenant:admin"
KPI_READ = "kpi:read"
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
# What a seller can hand to an agency (CONTRACT §7): reading, planning and pushing data.
# Never the administration of the seller itself nor its platform connections.
GRANTABLE_SCOPES: tuple[str, ...] = (
    "kpi:read",
    "targets:read",
    "targets:write",
    "alerts:manage",
    "ingest:write",
)

# Roles of a tenant's users (issue 5): each is a set of scopes. Viewers and analysts
# only read; approving targets is for owners and admins.
READ_SCOPES: tuple[str, ...] = ("kpi:read", "targets:read")
ROLES: dict[str, tuple[str, ...]] = {
    "owner": TENANT_SCOPES,
    "admin": TENANT_SCOPES,
    # Everything but administering the tenant and approving targets.
    "manager": tuple(s for s in TENANT_SCOPES if s not in (TENANT_ADMIN, "targets:approve")),
    "analyst": READ_SCOPES,
    "viewer": ("kpi:read",),
}
# What a role may be limited to; a limited user sees only those, totals included.
LIMIT_DIMENSIONS: tuple[str, ...] = ("stores", "marketplaces", "categories")
