"""`kpis` and `kpiCatalog`: answered by the metrics service's REST API."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import urlencode

import httpx
import orjson
import strawberry
from strawberry.permission import PermissionExtension
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from services.gateway.graphql.context import Context
from services.gateway.graphql.permissions import HasScope
from services.gateway.graphql.types import (
    DimensionValue,
    KpiDefinition,
    KpiFilters,
    KpiQueryInput,
    KpiResult,
    KpiRow,
    MetricValue,
)
from shared.access import resolve_access
from shared.errors import (
    BadRequest,
    FieldError,
    Forbidden,
    InvalidInput,
    LodestarError,
    NotFound,
    RateLimited,
    Unauthenticated,
    UpstreamUnavailable,
)
from shared.events import IDENTIFIER_LIMIT, is_identifier_length
from shared.http import DATA_VERSION_HEADER, MOST_ROWS_HEADER, TOO_MANY_ROWS
from shared.money import CURRENCY_REASON
from shared.query_lists import join_list
from shared.scopes import KPI_READ

log = logging.getLogger(__name__)

# Caps on list inputs: a query names a handful of KPIs and a bounded filter.
MAX_METRICS = 50
MAX_FILTER_VALUES = 200
# A KPI's id or a currency code is short; far longer is no name to look up.
MAX_NAME_CHARACTERS = 64
# The question goes to metrics as a query string, and HTTP servers (and httpx) take
# about 64 KiB of it: 200 values of 170 Chinese characters come to 300,000 encoded.
MAX_ENCODED_QUESTION = 60_000
Params = list[tuple[str, str | int | float | bool | None]]


def _query_params(data: KpiQueryInput) -> Params:
    filters = data.filters or KpiFilters()
    filter_lists: dict[str, list[str]] = {
        "platforms": filters.platforms or [],
        "stores": filters.stores or [],
        "marketplaces": filters.marketplaces or [],
        "skus": filters.skus or [],
        "categories": filters.categories or [],
    }
    too_long = [
        FieldError(field=f"input.filters.{name}", reason=f"at most {MAX_FILTER_VALUES} items")
        for name, items in filter_lists.items()
        if len(items) > MAX_FILTER_VALUES
    ]
    too_long += [
        FieldError(field=f"input.filters.{name}", reason=f"each {IDENTIFIER_LIMIT}")
        for name, items in filter_lists.items()
        if not all(is_identifier_length(item) for item in items)
    ]
    if len(data.metrics) > MAX_METRICS:
        too_long.insert(0, FieldError(field="input.metrics", reason=f"at most {MAX_METRICS} items"))
    names = {
        "input.metrics": data.metrics,
        "input.orderBy.metric": [data.order_by.metric if data.order_by else ""],
    }
    too_long += [
        FieldError(field=field, reason=f"each at most {MAX_NAME_CHARACTERS} characters")
        for field, values in names.items()
        if any(len(value) > MAX_NAME_CHARACTERS for value in values)
    ]
    if len(data.currency or "") > MAX_NAME_CHARACTERS:
        # Said as metrics says of any other currency that is none.
        too_long.append(FieldError(field="input.currency", reason=CURRENCY_REASON))
    if too_long:
        raise InvalidInput(f"{too_long[0].field}: {too_long[0].reason}", too_long)
    lists = {"metrics": data.metrics, **filter_lists}
    params: Params = [
        ("from", data.from_.isoformat()),
        ("to", data.to.isoformat()),
        ("grain", data.grain.value),
    ]
    # Quoted where a value holds a comma: "Lamps, Indoor" is one category, not two.
    params += [(name, join_list(items)) for name, items in lists.items() if items]
    if data.group_by:
        params.append(("group_by", join_list(d.value for d in data.group_by)))
    if data.currency is not None:
        params.append(("currency", data.currency))
    if data.compare_to is not None:
        params.append(("compare_to", data.compare_to.value))
    if data.order_by is not None:
        params.append(("order_by", f"{data.order_by.metric}:{data.order_by.direction.value}"))
    if data.limit is not None:
        params.append(("limit", data.limit))
    _check_encoded_length(params)
    return params


def _check_encoded_length(params: Params) -> None:
    """Refuses a question too long to send on, naming the filter that holds most of it."""
    encoded = {name: len(urlencode({name: value})) for name, value in params}
    if sum(encoded.values()) <= MAX_ENCODED_QUESTION:
        return
    longest = max(encoded, key=lambda name: encoded[name])
    reason = (
        f"too long to ask at once: {sum(encoded.values()):,} characters URL-encoded, at most "
        f"{MAX_ENCODED_QUESTION:,}; ask for fewer or shorter values"
    )
    field = "input.metrics" if longest == "metrics" else f"input.filters.{longest}"
    raise InvalidInput(f"{field}: {reason}", [FieldError(field=field, reason=reason)])


async def _tenant_param(context: Context, tenant_id: strawberry.ID | None) -> Params:
    """The seller a query names, when the caller may read it.

    Checked here against the grants and again by metrics (which gets ``tenant_id``):
    a tenant the caller may not read is FORBIDDEN, never an empty answer.
    """
    wanted = None if tenant_id is None or tenant_id is strawberry.UNSET else str(tenant_id)
    try:
        await resolve_access(context.request, await context.principal(), KPI_READ, wanted)
    except InvalidInput as refused:
        named = [replace(e, field=_graphql_field(e.field)) for e in refused.errors]
        raise InvalidInput(refused.detail.replace("tenant_id", "tenantId"), named) from None
    return [] if wanted is None else [("tenant_id", wanted)]


async def _get_metrics(
    context: Context, path: str, params: Params, most_rows: int | None = None
) -> Any:
    headers = {"Authorization": context.authorization, "Accept": "application/json"}
    if most_rows is not None:
        headers[MOST_ROWS_HEADER] = str(most_rows)
    try:
        response = await context.http.get(
            f"{context.metrics_url.rstrip('/')}{path}", params=params, headers=headers
        )
    except httpx.HTTPError as exc:
        # The caller learns only that metrics is away; the log says how.
        log.warning("metrics call failed: %s: %s", type(exc).__name__, exc)
        raise UpstreamUnavailable.for_now("the metrics service is unavailable") from None
    if response.status_code == 200:
        context.record(response)
        version = response.headers.get(DATA_VERSION_HEADER)
        if version is not None:
            context.saw(str(dict(params).get("tenant_id", "")), int(version))
        return orjson.loads(response.content)
    raise _error_from(response)


MAX_GRAPHQL_ROWS = 10_000
# Scalars all the kpis fields of one request may write out together: the gateway spends
# about 12 µs on each, its one event loop blocked meanwhile, and aliases would otherwise
# multiply the rows cap (fifteen aliased 3-year daily series held it 19 s; fifteen
# aliases of dimensions over 10,000 rows, 16 s).
MAX_GRAPHQL_CELLS = 100_000

# Metrics names fields as REST writes them; GraphQL clients wrote them in the input.
_GRAPHQL_FIELDS = {
    **{name: f"input.{name}" for name in ("metrics", "from", "to", "grain", "currency")},
    "group_by": "input.groupBy",
    "compare_to": "input.compareTo",
    "order_by": "input.orderBy",
    "limit": "input.limit",
    **{
        name: f"input.filters.{name}"
        for name in ("platforms", "stores", "marketplaces", "skus", "categories")
    },
    "tenant_id": "tenantId",
}


def _graphql_field(field: str) -> str:
    name, dot, rest = field.partition(".")
    known = _GRAPHQL_FIELDS.get(name)
    return field if known is None else known + dot + rest


def _error_from(response: httpx.Response) -> LodestarError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = str(body.get("detail") or body.get("error") or response.reason_phrase)
    named = [e for e in body.get("errors", []) or [] if isinstance(e, dict)]
    errors = [
        FieldError(
            field=_graphql_field(str(e.get("field", ""))),
            reason=str(e.get("reason", "")),
            index=e.get("index"),
        )
        for e in named
    ]
    for rest_name in {str(e.get("field", "")) for e in named}:
        # Metrics says "group_by: ..." where the GraphQL input has input.groupBy.
        graphql_name = _graphql_field(rest_name)
        # And "invalid request: " is dropped: other input errors begin with the field.
        detail = re.sub(
            rf"(^|; )(?:invalid request: )?{re.escape(rest_name)}: ",
            rf"\g<1>{graphql_name}: ",
            detail,
        )
    status = response.status_code
    if status == 401:
        return Unauthenticated(detail)
    if status == 403:
        return Forbidden(detail)
    if status == 404:
        return NotFound(detail)
    if status in (400, 413, 422):
        return InvalidInput(detail, errors) if status == 422 else BadRequest(detail, errors)
    if status == 429:
        # The caller's own rate at metrics, where each kpis field of a request counts:
        # its to slow down, with when to ask again, not a fault of the server.
        retry_after = response.headers.get("retry-after", "")
        return RateLimited(
            int(retry_after) if retry_after.isdigit() else 1,
            "too many KPI questions from this client (each kpis field counts)",
        )
    if status == 503:
        return UpstreamUnavailable.for_now(f"the metrics service is unavailable ({detail})")
    return UpstreamUnavailable(f"the metrics service failed ({status})")


def _skipped(selection: Selection) -> bool:
    directives = selection.directives or {}
    return directives.get("skip", {}).get("if") is True or (
        directives.get("include", {}).get("if") is False
    )


def _by_key(selections: list[Selection]) -> dict[str, list[SelectedField]]:
    """The fields among ``selections`` (fragments' included) that are written out, by
    the key they are written under: GraphQL merges the fields of one key into one, and
    writes nothing of a skipped one."""
    by_key: dict[str, list[SelectedField]] = defaultdict(list)
    for selection in selections:
        if _skipped(selection):
            continue
        if isinstance(selection, SelectedField):
            by_key[selection.alias or selection.name].append(selection)
        else:
            for key, fields in _by_key(selection.selections).items():
                by_key[key] += fields
    return by_key


def _inside(fields: list[SelectedField]) -> list[Selection]:
    return [selection for field in fields for selection in field.selections]


def _cells_a_row(info: Info[Context, None], metrics: int, dimensions: int) -> int:
    """How many scalars each row is written out as: for every key ``rows`` is written
    under (aliases make several, each written out whole), its period, and each
    dimension and metric once for every key written inside them. The field itself may be
    selected several times under one key (beside a fragment, say): GraphQL merges them."""
    merged = [field for field in info.selected_fields if isinstance(field, SelectedField)]
    total = 0
    for rows in _by_key(_inside(merged)).values():
        if rows[0].name != "rows":
            continue
        for inner in _values_by_key(_inside(rows)).values():
            times = {"dimensions": dimensions, "values": metrics}.get(inner[0].name)
            total += 1 if times is None else times * max(1, len(_values_by_key(_inside(inner))))
    return total


def _values_by_key(selections: list[Selection]) -> dict[str, list[SelectedField]]:
    """``_by_key`` without ``__typename``: Apollo Client adds it to every selection, and
    a type's name is no value of the answer (a query must pass from Apollo as from curl)."""
    return {k: v for k, v in _by_key(selections).items() if v[0].name != "__typename"}


def _refuse_rows(input: KpiQueryInput) -> NoReturn:
    # Typed GraphQL values cost this process about 120 µs a row, every other request
    # waiting meanwhile: a dashboard shows far fewer; bulk reads are REST's.
    field = "input.groupBy" if input.group_by else "input.grain"
    raise InvalidInput(
        f"the answer holds more than {MAX_GRAPHQL_ROWS:,} rows, more than GraphQL returns",
        [
            FieldError(
                field=field,
                reason=f"more than {MAX_GRAPHQL_ROWS:,} rows of periods and groups; "
                "ask for fewer days, a coarser grain or narrower filters, or read it "
                "from GET /v1/kpis, which answers larger questions (in CSV too)",
            )
        ],
    )


def _spend_cells(context: Context, cells: int) -> None:
    """Counts a field's scalars against its request's budget, or refuses the field."""
    spent = context.kpi_cells + cells
    if spent > MAX_GRAPHQL_CELLS:
        _refuse_cells()
    context.kpi_cells = spent


def _refuse_cells() -> NoReturn:
    raise InvalidInput(
        f"this request's kpis answers write out more than {MAX_GRAPHQL_CELLS:,} values",
        [
            FieldError(
                field="input.metrics",
                reason=f"more than {MAX_GRAPHQL_CELLS:,} values (each period, dimension "
                "and metric field of every row, aliases included) across the kpis fields "
                "of one request; ask in several requests, for fewer metrics or rows, or "
                "read it from GET /v1/kpis",
            )
        ],
    )


@strawberry.type
class KpiQuery:
    @strawberry.field(
        description="KPI values by period and dimensions (CONTRACT §5); scope kpi:read.",
        extensions=[PermissionExtension(permissions=[HasScope(KPI_READ)], use_directives=False)],
    )
    async def kpis(
        self,
        info: Info[Context, None],
        input: KpiQueryInput,
        tenant_id: strawberry.ID | None = strawberry.UNSET,
    ) -> KpiResult:
        tenant = await _tenant_param(info.context, tenant_id)
        # Each row costs at least its period and every metric asked, which metrics
        # computes and this process reads, written out or not.
        cells = max(
            _cells_a_row(info, len(input.metrics), len(input.group_by or [])),
            1 + len(input.metrics),
        )
        # The rows this field may still take, told to metrics so that it refuses a larger
        # answer as it grows: built whole and refused here, fifteen aliases of one held
        # metrics (and every tenant's questions) 20 s.
        affordable = (MAX_GRAPHQL_CELLS - info.context.kpi_cells) // cells
        most_rows = max(1, min(MAX_GRAPHQL_ROWS, affordable))
        try:
            body = await _get_metrics(
                info.context, "/v1/kpis", _query_params(input) + tenant, most_rows
            )
        except InvalidInput as refused:
            if not refused.detail.startswith(TOO_MANY_ROWS):
                raise
            if most_rows < MAX_GRAPHQL_ROWS:
                _refuse_cells()  # the budget, not the rows cap, bounded it
            _refuse_rows(input)
        rows = len(body.get("rows", []))
        if rows > MAX_GRAPHQL_ROWS:
            _refuse_rows(input)
        _spend_cells(info.context, rows * cells)
        return KpiResult(
            currency=body.get("currency"),
            warnings=list(body.get("warnings", [])),
            rows=[
                KpiRow(
                    period=row["period"],
                    dimensions=[
                        DimensionValue(key=d["key"], value=d["value"]) for d in row["dimensions"]
                    ],
                    values=[
                        MetricValue(
                            metric=v["metric"],
                            value=v.get("value"),
                            previous=v.get("previous"),
                            change=v.get("change"),
                        )
                        for v in row["values"]
                    ],
                )
                for row in body.get("rows", [])
            ],
        )

    @strawberry.field(
        name="kpiCatalog",
        description="Every KPI with its definition; scope kpi:read.",
        extensions=[PermissionExtension(permissions=[HasScope(KPI_READ)], use_directives=False)],
    )
    async def kpi_catalog(
        self, info: Info[Context, None], tenant_id: strawberry.ID | None = strawberry.UNSET
    ) -> list[KpiDefinition]:
        tenant = await _tenant_param(info.context, tenant_id)
        body = await _get_metrics(info.context, "/v1/kpis/catalog", tenant)
        return [
            KpiDefinition(
                id=k["id"],
                name=k["name"],
                unit=k["unit"],
                direction=k["direction"],
                description=k["description"],
            )
            for k in body.get("kpis", [])
        ]
