"""Which rows of the gateway's schema belong to a tenant, for exports and erasure.

Tables with a ``tenant_id`` column are found by themselves; these are the exceptions.
"""

from __future__ import annotations

from shared.tenant_data import TenantTables

GATEWAY_SCHEMA = "gateway"
GATEWAY_TABLES = TenantTables(
    keys={
        "tenants": ("id",),
        # Both sides: a seller's grants end with the seller, an agency's with the agency.
        "grants": ("tenant_id", "agency_tenant_id"),
    },
    # The proof that the tenant was erased keeps its id; nothing else does.
    kept=frozenset({"erasures"}),
    # Erased with the tenant, never exported: an archive inside the next archive would
    # double every export.
    # Failed sign-ins too: a pause of a quarter of an hour is no data of the tenant's.
    unexported=frozenset({"exports", "export_parts", "sign_in_failures"}),
    # Who issued a grant (the seller's client or user) is the seller's to know.
    owners_only={"grants": ("tenant_id", frozenset({"created_by"}))},
)
