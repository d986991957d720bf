from __future__ import annotations

from pydantic import BaseModel


class DimensionValue(BaseModel):
    key: str
    value: str | None


class MetricValue(BaseModel):
    metric: str
    value: float | None
    previous: float | None
    change: float | None


class KpiRow(BaseModel):
    period: str
    dimensions: list[DimensionValue]
    values: list[MetricValue]


class KpiResult(BaseModel):
    currency: str | None
    rows: list[KpiRow]
    warnings: list[str]


class KpiDefinitionOut(BaseModel):
    id: str
    name: str
    unit: str
    direction: str
    description: str
    available: bool


class KpiCatalog(BaseModel):
    kpis: list[KpiDefinitionOut]
