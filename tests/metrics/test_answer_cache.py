"""Cached answers: served while the tenant's data and settings are unchanged, never after."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.metrics.kpis.cache import ANSWERS, AnswerCache
from services.metrics.kpis.query import parse_query
from services.metrics.kpis.repository import RollupRepository
from services.metrics.kpis.service import COMPUTING, run_query
from shared.db import Database
from tests.conftest import NewTenant, Stack, TenantClient
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_order_attached import push, settle

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


async def test_answers_are_reused_until_data_or_settings_change(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await push(http, tenant, line("c1", "O1", 1, "10.00", "2026-03-10T18:00:00Z", tax="1.00"))
    await settle(http, tenant, {"gmv": 10.0}, **MARCH)
    hits = ANSWERS.hits
    first = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    again = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert again == first and ANSWERS.hits >= hits + 1
    # New data: the next answer shows it, not the cached one.
    await push(http, tenant, line("c2", "O2", 1, "5.00", "2026-03-11T18:00:00Z"))
    await settle(http, tenant, {"gmv": 15.0}, **MARCH)
    # A settings change applies to the very next answer.
    changed = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=tenant.headers
    )
    assert changed.status_code == 200
    body = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert body["rows"][0]["values"][0]["value"] == 16.0


async def test_an_erp_holding_the_answer_gets_304_until_it_changes(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    other = await new_tenant()
    await push(http, tenant, line("t1", "O1", 1, "10.00", "2026-03-10T18:00:00Z"))
    await settle(http, tenant, {"gmv": 10.0}, **MARCH)
    params = {"metrics": "gmv", "grain": "total", **MARCH}
    first = await http.get("/v1/kpis", params=params, headers=tenant.headers)
    etag = first.headers["etag"]
    assert first.headers["vary"] == "Accept, Accept-Encoding"
    assert "no-cache" in first.headers["cache-control"]

    async def ask(held: str, who: TenantClient = tenant, **more: str) -> httpx.Response:
        headers = {**who.headers, "If-None-Match": held}
        return await http.get("/v1/kpis", params={**params, **more}, headers=headers)

    unchanged = await ask(etag)
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert (await ask(f'"other", {etag.removeprefix("W/")}')).status_code == 304
    # A list sent on two lines is the same list (RFC 9110 §5.3), Accept's too.
    two_lines = [*tenant.headers.items(), ("If-None-Match", '"other"'), ("If-None-Match", etag)]
    assert (await http.get("/v1/kpis", params=params, headers=two_lines)).status_code == 304
    accepts = [*tenant.headers.items(), ("Accept", "application/xml"), ("Accept", "text/csv")]
    as_csv = await http.get("/v1/kpis", params=params, headers=accepts)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert (await ask("*")).status_code == 304
    # The tag names the data version, not bytes in memory: a replica that never
    # computed the answer confirms it without computing it.
    ANSWERS.clear()
    misses = ANSWERS.misses
    assert (await ask(etag)).status_code == 304 and ANSWERS.misses == misses
    assert (await ask('"not-this-one"')).status_code == 200
    # The CSV of the same answer is another representation with its own tag.
    csv = await http.get(
        "/v1/kpis", params=params, headers={**tenant.headers, "Accept": "text/csv"}
    )
    assert csv.headers["etag"] != etag
    # The tag does not let anyone past the access checks.
    denied = await ask(etag, who=other, tenant_id=tenant.tenant_id)
    assert denied.status_code == 403
    # New data, new answer: the old tag gets the whole new body.
    await push(http, tenant, line("t2", "O2", 1, "5.00", "2026-03-11T18:00:00Z"))
    await settle(http, tenant, {"gmv": 15.0}, **MARCH)
    changed = await ask(etag)
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["rows"][0]["values"][0]["value"] == 15.0


def test_the_cache_keeps_the_most_recently_used_answers() -> None:
    cache = AnswerCache(capacity=2)
    a, b, c = ({"rows": [], "n": n} for n in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") == a
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") == a and cache.get("c") == c


def test_answers_are_kept_by_their_rows() -> None:
    cache = AnswerCache(capacity=10, max_rows=5)
    cache.put("small", {"rows": [1, 2]})
    cache.put("medium", {"rows": [1, 2, 3]})
    assert cache.get("small") is not None and cache.weight == 5
    # Two more rows: the least recently used answer makes room.
    cache.put("next", {"rows": [1, 2]})
    assert "medium" not in cache and "small" in cache and cache.weight == 4
    # An answer larger than the whole budget is not kept, and drops nothing.
    cache.put("huge", {"rows": list(range(6))})
    assert "huge" not in cache and cache.weight == 4
    # Kept again under the same key, an answer is weighed once.
    cache.put("next", {"rows": [1]})
    assert cache.weight == 3
    cache.clear()
    assert cache.weight == 0


class CountingCache(AnswerCache):
    """Counts the answers computed: each one computed is put once."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.puts += 1
        super().put(key, value)


def a_question() -> Any:
    return parse_query(
        f"tn_{secrets.token_hex(6)}",
        {"metrics": "gmv,orders", "from": "2026-01-01", "to": "2026-12-31", "grain": "month"},
    )


async def ask(db: Database, query: Any, cache: AnswerCache) -> tuple[dict[str, Any], str]:
    async with db.raw_connection() as conn:
        return await run_query(conn, query, cache=cache)


async def test_the_same_question_missed_together_is_computed_once(stack: Stack) -> None:
    db = Database(stack.config.database_url, "metrics", pool_size=5)
    query, cache = a_question(), CountingCache()

    try:
        answers = await asyncio.gather(*(ask(db, query, cache) for _ in range(5)))
    finally:
        await db.dispose()
    assert cache.puts == 1
    assert all(answer == answers[0] for answer in answers)


async def test_a_waiter_computes_for_itself_when_the_computation_fails(
    stack: Stack, pg: asyncpg.Connection
) -> None:
    db = Database(stack.config.database_url, "metrics", pool_size=2)
    query, cache = a_question(), CountingCache()

    try:
        # The first computation is held on a rollup until the second request waits for it.
        async with pg.transaction():
            await pg.execute("LOCK TABLE metrics.daily_store_sales IN ACCESS EXCLUSIVE MODE")
            first = asyncio.create_task(ask(db, query, cache))
            while not COMPUTING:
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(ask(db, query, cache))
            await asyncio.sleep(0.5)
            first.cancel()
        body, _ = await waiting
    finally:
        await db.dispose()
    assert first.cancelled() and cache.puts == 1
    assert [row["period"] for row in body["rows"]][:2] == ["2026-01-01", "2026-02-01"]


async def test_the_late_shipment_stamp_never_comes_back(stack: Stack) -> None:
    """The key of an answer with late shipments names the promises passed by then. Were
    it a window of recent promises, it would empty again two days later and match a key
    from before the promise passed: a stale answer, and 304s for it."""
    db = Database(stack.config.database_url, "metrics", pool_size=1)
    tenant = f"tn_{secrets.token_hex(4)}"
    promised = datetime(2026, 4, 10, 18, tzinfo=UTC)
    try:
        async with db.raw_connection() as conn:
            await conn.execute(
                "INSERT INTO open_shipments VALUES ($1, 's1', 'amazon', 'acme-us', 'US', $2)",
                tenant,
                promised,
            )
            repository = RollupRepository(conn)
            stamps = [
                await repository.promise_stamp(tenant, promised + timedelta(hours=hours))
                for hours in (-1, 1, 72, 24 * 400)
            ]
    finally:
        await db.dispose()
    assert stamps[0] != stamps[1]
    assert stamps[1] == stamps[2] == stamps[3]
