from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.metrics.kpis.query import parse_query
from services.metrics.kpis.registry import KPIS, describe
from services.metrics.kpis.schemas import KpiCatalog, KpiDefinitionOut, KpiResult
from services.metrics.kpis.service import run_query
from services.metrics.settings.repository import SettingsRepository
from shared.auth import Principal, require_scope
from shared.db import Database
from shared.errors import Forbidden

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
Reader = Annotated[Principal, Depends(require_scope("kpi:read"))]


def _csv(body: dict[str, Any], group_by: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period", *group_by, "metric", "value", "previous", "change", "currency"])
    for row in body["rows"]:
        dims = [d["value"] for d in row["dimensions"]]
        for value in row["values"]:
            writer.writerow(
                [
                    row["period"],
                    *dims,
                    value["metric"],
                    "" if value["value"] is None else repr(value["value"]),
                    "" if value["previous"] is None else repr(value["previous"]),
                    "" if value["change"] is None else repr(value["change"]),
                    body["currency"] or "",
                ]
            )
    return out.getvalue()


@router.get(
    "",
    response_model=KpiResult,
    responses={200: {"content": {"text/csv": {}}}},
)
async def kpis(
    request: Request,
    principal: Reader,
    metrics: Annotated[str, Query(description="Comma-separated KPI ids, e.g. gmv,orders")],
    from_: Annotated[str, Query(alias="from", description="First local date, inclusive")],
    to: Annotated[str, Query(description="Last local date, inclusive")],
    grain: Annotated[str, Query(description="day, week, month, quarter, year or total")],
    group_by: Annotated[
        str | None, Query(description="platform,store,marketplace,sku,category")
    ] = None,
    platforms: str | None = None,
    stores: str | None = None,
    marketplaces: str | None = None,
    skus: str | None = None,
    categories: str | None = None,
    currency: str | None = None,
    compare_to: Annotated[str | None, Query(description="previous_period or previous_year")] = None,
    tenant_id: Annotated[str | None, Query(description="The seller, for an agency")] = None,
) -> Any:
    """KPI values by period and dimensions, as JSON or (``Accept: text/csv``) CSV."""
    own = principal.require_tenant()
    if tenant_id is not None and tenant_id != own:
        raise Forbidden(f"no access to tenant {tenant_id}")
    query = parse_query(
        own,
        {
            "metrics": metrics,
            "from": from_,
            "to": to,
            "grain": grain,
            "group_by": group_by,
            "platforms": platforms,
            "stores": stores,
            "marketplaces": marketplaces,
            "skus": skus,
            "categories": categories,
            "currency": currency,
            "compare_to": compare_to,
        },
    )
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        body = await run_query(conn, query)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(_csv(body, query.group_by), media_type="text/csv")
    return body


@router.get("/catalog", response_model=KpiCatalog)
async def catalog(request: Request, principal: Reader) -> KpiCatalog:
    """Every KPI of the contract with its definition as this tenant's settings make it;
    ``available`` ones can be queried."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        settings = await SettingsRepository(conn).get(principal.require_tenant())
    return KpiCatalog(
        kpis=[
            KpiDefinitionOut(
                id=k.id,
                name=k.name,
                unit=k.unit,
                direction=k.direction,
                description=describe(k, settings),
                available=k.available,
            )
            for k in KPIS.values()
        ]
    )
