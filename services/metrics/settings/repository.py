from __future__ import annotations

import asyncpg

from services.metrics.settings.schemas import KpiSettings, KpiSettingsOut


class SettingsRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, tenant_id: str, for_update: bool = False) -> KpiSettingsOut:
        """The settings; ``for_update`` locks them until the transaction ends."""
        row = await self.conn.fetchrow(
            "SELECT gmv_includes_tax, gmv_includes_shipping, refunds_by, reporting_currency, "
            "updated_at "
            "FROM kpi_settings WHERE tenant_id = $1" + (" FOR UPDATE" if for_update else ""),
            tenant_id,
        )
        return KpiSettingsOut.model_validate(dict(row)) if row else KpiSettingsOut()

    async def get_with_data_version(self, tenant_id: str) -> tuple[int, KpiSettingsOut]:
        """The settings and the tenant's data version (see kpis.cache) in one round trip."""
        row = await self.conn.fetchrow(
            """
            SELECT coalesce((SELECT version FROM tenant_data_versions WHERE tenant_id = $1), 0)
                       AS data_version,
                   k.tenant_id IS NOT NULL AS stored, k.gmv_includes_tax,
                   k.gmv_includes_shipping, k.refunds_by, k.reporting_currency, k.updated_at
            FROM (SELECT 1) AS one LEFT JOIN kpi_settings k ON k.tenant_id = $1
            """,
            tenant_id,
        )
        assert row is not None
        fields = dict(row)
        version, stored = int(fields.pop("data_version")), fields.pop("stored")
        return version, KpiSettingsOut.model_validate(fields) if stored else KpiSettingsOut()

    async def put(self, tenant_id: str, settings: KpiSettings) -> KpiSettingsOut:
        row = await self.conn.fetchrow(
            """
            INSERT INTO kpi_settings AS k
                (tenant_id, gmv_includes_tax, gmv_includes_shipping, refunds_by,
                 reporting_currency, updated_at)
            VALUES ($1, $2, $3, $4, $5, now())
            ON CONFLICT (tenant_id) DO UPDATE SET
                gmv_includes_tax = EXCLUDED.gmv_includes_tax,
                gmv_includes_shipping = EXCLUDED.gmv_includes_shipping,
                refunds_by = EXCLUDED.refunds_by,
                reporting_currency = EXCLUDED.reporting_currency,
                updated_at = now()
            RETURNING gmv_includes_tax, gmv_includes_shipping, refunds_by, reporting_currency,
                      updated_at
            """,
            tenant_id,
            settings.gmv_includes_tax,
            settings.gmv_includes_shipping,
            settings.refunds_by,
            settings.reporting_currency,
        )
        assert row is not None
        return KpiSettingsOut.model_validate(dict(row))
