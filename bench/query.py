"""Query speed: dashboard questions in GraphQL over years of order lines.

Generates order lines over three years (3 marketplaces in USD, MXN and BRL, 2,000
SKUs, two lines an order, 5 % cancelled) with DuckDB, loads them as facts and daily
rollups into a running stack's metrics schema (the same aggregation the consumer keeps
incrementally), with a daily FX rate per currency, and every SKU's daily ad spend and
attributed sales (kept per SKU as the consumer keeps them, and per store). Then asks
five questions through GraphQL at 1 and 20 concurrent clients:

  1. a year by month and marketplace, GMV and orders, compared with the previous year
  2. a quarter by day for one store
  3. the top 50 SKUs of a month by GMV
  4. GMV and orders over everything
  5. a year of ad spend and ACoS by month and marketplace

Baseline in the same run: DuckDB answering the same questions over the raw lines and
ad rows in memory (with the same FX conversion).

    python -m bench.query [--lines 10000000] [--rounds 20] [--skus-with-ads 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import duckdb

from bench.stack import BenchTenant, machine, new_tenant, percentile, running_stack
from shared.db import asyncpg_dsn
from shared.http import make_client

FIRST_DAY = "2023-12-01"
DAYS = 1096

GENERATE = f"""
CREATE TABLE lines AS
WITH raw AS (
    SELECT i, i // 2 AS o FROM range(?) t(i)
)
SELECT
    'e' || i AS event_id,
    'o' || o AS order_id,
    (i % 2)::VARCHAR AS line_id,
    ['US', 'MX', 'BR'][1 + (o % 3)::INT] AS marketplace,
    ['acme-us', 'acme-mx', 'acme-br'][1 + (o % 3)::INT] AS store_id,
    ['USD', 'MXN', 'BRL'][1 + (o % 3)::INT] AS currency,
    'SKU-' || lpad((hash(i) % 2000)::VARCHAR, 4, '0') AS sku,
    'cat-' || (hash(i) % 2000 % 20)::VARCHAR AS category,
    (1 + i % 3)::INT AS quantity,
    (5 + (hash(i) % 2000) / 20.0 * [1, 17, 5][1 + (o % 3)::INT])::DECIMAL(12, 2) AS unit_price,
    CASE WHEN hash(i * 31) % 20 = 0 THEN 'cancelled' ELSE 'shipped' END AS status,
    DATE '{FIRST_DAY}' + (hash(o) % {DAYS})::INT AS local_date,
    (hash(o) % 24)::INT AS hour
FROM raw
"""

FX = f"""
CREATE TABLE fx AS
SELECT d::DATE AS rate_date, c AS quote,
       CASE c WHEN 'MXN' THEN 17 + (hash(d) % 100) / 100.0 ELSE 5 + (hash(d) % 50) / 100.0 END::DECIMAL(12, 6) AS rate
FROM range(DATE '{FIRST_DAY}', DATE '{FIRST_DAY}' + {DAYS}, INTERVAL 1 DAY) t(d), (VALUES ('MXN'), ('BRL')) c(c)
"""


# Daily ad spend of every SKU on its marketplace, as ad_spend events bring it: one row a
# SKU and day, each in the marketplace's currency.
ADS = f"""
CREATE TABLE ads AS
SELECT d::DATE AS local_date,
       ['US', 'MX', 'BR'][1 + s % 3] AS marketplace,
       ['acme-us', 'acme-mx', 'acme-br'][1 + s % 3] AS store_id,
       ['USD', 'MXN', 'BRL'][1 + s % 3] AS currency,
       'SKU-' || lpad(s::VARCHAR, 4, '0') AS sku,
       (1 + hash(s * 7 + epoch(d)) % 500 / 100.0)::DECIMAL(12, 2) AS cost,
       (hash(s + epoch(d)) % 4000 / 100.0)::DECIMAL(12, 2) AS sales
FROM range(DATE '{FIRST_DAY}', DATE '{FIRST_DAY}' + {DAYS}, INTERVAL 1 DAY) t(d), range(?) k(s)
"""


def generate(lines: int, workdir: Path, skus_with_ads: int) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute(GENERATE, [lines])
    db.execute(FX)
    db.execute(ADS, [skus_with_ads])
    db.execute(f"COPY lines TO '{workdir / 'lines.csv'}' (HEADER false)")
    db.execute(f"COPY fx TO '{workdir / 'fx.csv'}' (HEADER false)")
    db.execute(f"COPY ads TO '{workdir / 'ads.csv'}' (HEADER false)")
    return db


# The rollups are written day after day, as the consumer writes them when events come
# in: a month's rows then sit together on disk. (Grouped in one statement without an
# order, they would be spread over the whole table, and a month read every page of it.)
LOAD = [
    """CREATE TEMP TABLE staged (event_id text, order_id text, line_id text, marketplace text, store_id text,
        currency text, sku text, category text, quantity int, unit_price numeric, status text, local_date date, hour int)""",
    "COPY_LINES",
    """INSERT INTO order_lines (tenant_id, event_id, version, platform, store_id, marketplace, order_id, line_id, sku,
        category, status, quantity, currency, unit_price, shipping, discount, tax, purchased_at, local_date)
       SELECT $1, event_id, 1, 'amazon', store_id, marketplace, order_id, line_id, sku, category, status, quantity,
              currency, unit_price, 0, 0, 0, local_date + make_interval(hours => hour), local_date FROM staged""",
    """INSERT INTO daily_sales (tenant_id, local_date, platform, store_id, marketplace, sku, category, currency,
        gross, shipping, discount, tax, units, lines)
       SELECT tenant_id, local_date, platform, store_id, marketplace, sku, category, currency,
              sum(quantity * unit_price), 0, 0, 0, sum(quantity), count(*)
       FROM order_lines WHERE tenant_id = $1 AND status <> 'cancelled'
       GROUP BY tenant_id, local_date, platform, store_id, marketplace, sku, category, currency
       ORDER BY local_date""",
    """INSERT INTO daily_store_sales (tenant_id, local_date, platform, store_id, marketplace, currency,
        gross, shipping, discount, tax, units, lines)
       SELECT tenant_id, local_date, platform, store_id, marketplace, currency,
              sum(gross), 0, 0, 0, sum(units), sum(lines)
       FROM daily_sales WHERE tenant_id = $1
       GROUP BY tenant_id, local_date, platform, store_id, marketplace, currency
       ORDER BY local_date""",
    """INSERT INTO orders (tenant_id, platform, store_id, order_id, marketplace, order_date, live_lines, lines)
       SELECT tenant_id, platform, store_id, order_id, min(marketplace), min(local_date),
              count(*) FILTER (WHERE status <> 'cancelled'), count(*)
       FROM order_lines WHERE tenant_id = $1 GROUP BY tenant_id, platform, store_id, order_id""",
    """INSERT INTO daily_orders (tenant_id, local_date, platform, store_id, marketplace, orders, orders_all)
       SELECT tenant_id, order_date, platform, store_id, marketplace, count(*) FILTER (WHERE live_lines > 0), count(*)
       FROM orders WHERE tenant_id = $1 GROUP BY tenant_id, order_date, platform, store_id, marketplace
       ORDER BY order_date""",
    """CREATE TEMP TABLE staged_ads (local_date date, marketplace text, store_id text, currency text,
        sku text, cost numeric, sales numeric)""",
    "COPY_ADS",
    """INSERT INTO daily_measures (tenant_id, local_date, platform, store_id, marketplace, sku, measure,
        currency, value, facts)
       SELECT $1, local_date, 'amazon', store_id, marketplace, sku, m.measure, currency,
              CASE m.measure WHEN 'ad_cost' THEN cost ELSE sales END, 1
       FROM staged_ads, (VALUES ('ad_cost'), ('ad_sales')) m(measure)
       ORDER BY local_date""",
    """INSERT INTO daily_store_measures (tenant_id, measure, local_date, platform, store_id, marketplace,
        currency, value, facts)
       SELECT tenant_id, measure, local_date, platform, store_id, marketplace, currency, sum(value),
              sum(facts)
       FROM daily_measures WHERE tenant_id = $1
       GROUP BY tenant_id, measure, local_date, platform, store_id, marketplace, currency
       ORDER BY local_date""",
    "CREATE TEMP TABLE staged_fx (rate_date date, quote text, rate numeric)",
    "COPY_FX",
    """INSERT INTO fx_rates (tenant_id, event_id, rate_date, base, quote, rate)
       SELECT $1, 'fx-' || quote || rate_date, rate_date, 'USD', quote, rate FROM staged_fx""",
    # Three years of data arriving day by day were vacuumed as they came: without this,
    # autovacuum starts on ten million fresh rows in the middle of the measurements.
    "VACUUM ANALYZE",
]


async def load(database_url: str, tenant_id: str, workdir: Path) -> float:
    started = time.monotonic()
    conn = await asyncpg.connect(
        asyncpg_dsn(database_url), server_settings={"search_path": "metrics"}
    )
    try:
        for statement in LOAD:
            if statement == "COPY_LINES":
                await conn.copy_to_table("staged", source=workdir / "lines.csv", format="csv")
            elif statement == "COPY_FX":
                await conn.copy_to_table("staged_fx", source=workdir / "fx.csv", format="csv")
            elif statement == "COPY_ADS":
                await conn.copy_to_table("staged_ads", source=workdir / "ads.csv", format="csv")
            elif "$1" in statement:
                await conn.execute(statement, tenant_id)
            else:
                await conn.execute(statement)
    finally:
        await conn.close()
    return time.monotonic() - started


QUERY = """query($i: KpiQueryInput!) { kpis(input: $i) { currency rows { period dimensions { key value } values { metric value previous } } warnings } }"""
QUESTIONS: dict[str, dict[str, Any]] = {
    "year by month x marketplace, vs previous year": {
        "metrics": ["gmv", "orders"],
        "from": "2026-01-01",
        "to": "2026-11-30",
        "grain": "MONTH",
        "groupBy": ["MARKETPLACE"],
        "compareTo": "PREVIOUS_YEAR",
        "currency": "USD",
    },
    "quarter by day, one store": {
        "metrics": ["gmv", "orders"],
        "from": "2026-07-01",
        "to": "2026-09-30",
        "grain": "DAY",
        "filters": {"stores": ["acme-mx"]},
        "currency": "USD",
    },
    "top 50 SKUs of a month": {
        "metrics": ["gmv"],
        "from": "2026-06-01",
        "to": "2026-06-30",
        "grain": "TOTAL",
        "groupBy": ["SKU"],
        "orderBy": {"metric": "gmv", "direction": "DESC"},
        "limit": 50,
        "currency": "USD",
    },
    "total over everything": {
        "metrics": ["gmv", "orders"],
        "from": FIRST_DAY,
        "to": "2026-11-30",
        "grain": "TOTAL",
        "currency": "USD",
    },
    "a year of ad spend and ACoS by month x marketplace": {
        "metrics": ["ad_spend", "acos"],
        "from": "2026-01-01",
        "to": "2026-11-30",
        "grain": "MONTH",
        "groupBy": ["MARKETPLACE"],
        "currency": "USD",
    },
}

CONVERTED = "(CASE l.currency WHEN 'USD' THEN 1 ELSE 1 / f.rate END)"
DUCK_JOIN = "FROM lines l LEFT JOIN fx f ON f.quote = l.currency AND f.rate_date = l.local_date"
DUCK: dict[str, str] = {
    "year by month x marketplace, vs previous year": f"""
        SELECT date_trunc('month', local_date) AS m, marketplace,
               sum(quantity * unit_price * {CONVERTED}) FILTER (WHERE status <> 'cancelled') AS gmv,
               count(DISTINCT order_id) FILTER (WHERE status <> 'cancelled') AS orders
        {DUCK_JOIN} WHERE local_date BETWEEN DATE '2025-01-01' AND DATE '2026-11-30' GROUP BY ALL""",
    "quarter by day, one store": f"""
        SELECT local_date, sum(quantity * unit_price * {CONVERTED}) FILTER (WHERE status <> 'cancelled') AS gmv,
               count(DISTINCT order_id) FILTER (WHERE status <> 'cancelled') AS orders
        {DUCK_JOIN} WHERE store_id = 'acme-mx' AND local_date BETWEEN DATE '2026-07-01' AND DATE '2026-09-30' GROUP BY ALL""",
    "top 50 SKUs of a month": f"""
        SELECT sku, sum(quantity * unit_price * {CONVERTED}) AS gmv {DUCK_JOIN}
        WHERE status <> 'cancelled' AND local_date BETWEEN DATE '2026-06-01' AND DATE '2026-06-30'
        GROUP BY sku ORDER BY gmv DESC LIMIT 50""",
    "total over everything": f"""
        SELECT sum(quantity * unit_price * {CONVERTED}) FILTER (WHERE status <> 'cancelled') AS gmv,
               count(DISTINCT order_id) FILTER (WHERE status <> 'cancelled') AS orders
        {DUCK_JOIN} WHERE local_date BETWEEN DATE '{FIRST_DAY}' AND DATE '2026-11-30'""",
    "a year of ad spend and ACoS by month x marketplace": f"""
        SELECT date_trunc('month', local_date) AS m, marketplace,
               sum(cost * {CONVERTED}) AS ad_spend, sum(cost * {CONVERTED}) / sum(sales * {CONVERTED}) AS acos
        FROM ads l LEFT JOIN fx f ON f.quote = l.currency AND f.rate_date = l.local_date
        WHERE local_date BETWEEN DATE '2026-01-01' AND DATE '2026-11-30' GROUP BY ALL""",
}


async def timed(call: Callable[[], Any], clients: int, rounds: int) -> list[float]:
    samples: list[float] = []

    async def client() -> None:
        for _ in range(rounds):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


async def graphql_times(
    base_url: str, tenant: BenchTenant, rounds: int
) -> dict[tuple[str, int, str], list[float]]:
    """Each question asked again and again ("repeat": dashboards refreshing, answered
    from the cache while the data is unchanged) and asked afresh every time ("first":
    a platform filter naming one more, absent platform makes each call a new question
    with the same answer, so every call computes)."""
    results: dict[tuple[str, int, str], list[float]] = {}
    fresh = itertools.count()
    # The services' own client: the load generator shares the two cores with what it
    # measures, and httpx's default pool costs more CPU per call than a cached answer.
    async with make_client(120, base_url=base_url) as client:
        for name, variables in QUESTIONS.items():

            async def ask(variables: dict[str, Any] = variables, first: bool = False) -> None:
                if first:
                    filters = {**variables.get("filters", {})}
                    filters["platforms"] = ["amazon", f"never-{next(fresh)}"]
                    variables = {**variables, "filters": filters}
                response = await client.post(
                    "/graphql",
                    json={"query": QUERY, "variables": {"i": variables}},
                    headers=tenant.headers,
                )
                body = response.json()
                assert "errors" not in body, body
                assert not body["data"]["kpis"]["warnings"], body["data"]["kpis"]["warnings"]

            await ask()  # warm up
            for clients in (1, 20):
                results[(name, clients, "first")] = await timed(
                    lambda: ask(first=True), clients, rounds
                )
                results[(name, clients, "repeat")] = await timed(ask, clients, rounds)
    return results


def _duck_concurrently(db: duckdb.DuckDBPyConnection, sql: str, rounds: int) -> list[float]:
    """20 clients, each its own cursor on the same in-memory database."""
    samples: list[float] = []

    async def one(cursor: duckdb.DuckDBPyConnection) -> None:
        for _ in range(rounds):
            started = time.perf_counter()
            await asyncio.to_thread(lambda: cursor.execute(sql).fetchall())
            samples.append(time.perf_counter() - started)

    async def run_all() -> None:
        await asyncio.gather(*(one(db.cursor()) for _ in range(20)))

    asyncio.run(run_all())
    return samples


def duck_times(db: duckdb.DuckDBPyConnection, rounds: int) -> dict[tuple[str, int], list[float]]:
    results: dict[tuple[str, int], list[float]] = {}
    for name, sql in DUCK.items():
        db.execute(sql).fetchall()
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            db.execute(sql).fetchall()
            samples.append(time.perf_counter() - started)
        results[(name, 1)] = samples
        concurrent = _duck_concurrently(db, sql, max(1, rounds // 4))
        results[(name, 20)] = concurrent
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--skus-with-ads", type=int, default=2000, help="SKUs with daily ad spend and sales"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lodestar-query-bench-"))
    started = time.monotonic()
    duck = generate(args.lines, workdir, args.skus_with_ads)
    generated = time.monotonic() - started
    try:
        with running_stack() as config:
            tenant = new_tenant(config)
            loaded = asyncio.run(load(config.database_url, tenant.tenant_id, workdir))
            ours = asyncio.run(graphql_times(config.url("gateway"), tenant, args.rounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    theirs = duck_times(duck, args.rounds)
    print(f"machine: {machine()}")
    print(
        f"{args.lines:,} order lines and {args.skus_with_ads:,} SKUs' daily ads over {DAYS} days: "
        f"generated in {generated:.0f} s, loaded with rollups in {loaded:.0f} s"
    )
    print(
        f"{'question':<52} {'clients':>7} {'first ask p50/p95 ms':>22} "
        f"{'repeat p50/p95 ms':>20} {'DuckDB scan p50/p95 ms':>24}"
    )
    for name in QUESTIONS:
        for clients in (1, 20):
            first, again = ours[(name, clients, "first")], ours[(name, clients, "repeat")]
            base = theirs[(name, clients)]
            print(
                f"{name:<52} {clients:>7} "
                f"{percentile(first, 0.5) * 1000:>10.1f} / {percentile(first, 0.95) * 1000:<9.1f} "
                f"{percentile(again, 0.5) * 1000:>8.1f} / {percentile(again, 0.95) * 1000:<9.1f} "
                f"{percentile(base, 0.5) * 1000:>11.1f} / {percentile(base, 0.95) * 1000:<9.1f}"
            )
    print("goal: p95 under 30 ms at 20 clients, and faster than the DuckDB scan")


if __name__ == "__main__":
    main()
