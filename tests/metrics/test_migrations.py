"""Schema changes that rebuild a rollup keep its counts, both ways."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

from alembic import command

from shared.migrations import alembic_config, upgrade
from tests.conftest import FreshDatabase, schema_connection

ORDER_SKUS = [
    # tenant, platform, store, order, sku, marketplace, date, live, category
    ("t1", "amazon", "s1", "O1", "LAMP", "US", "2026-04-10", True, "home"),
    ("t1", "amazon", "s1", "O2", "LAMP", "US", "2026-04-10", False, "outdoor"),
    ("t1", "amazon", "s1", "O3", "LAMP", "US", "2026-04-10", True, "home"),
]


async def sku_orders(url: str) -> set[tuple[object, ...]]:
    async with schema_connection(url, "metrics") as conn:
        return {tuple(row.values()) for row in await conn.fetch("SELECT * FROM daily_sku_orders")}


async def test_sku_orders_gain_the_category_and_lose_it_again(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0011")
    async with schema_connection(url, "metrics") as conn:
        await conn.executemany(
            "INSERT INTO order_skus (tenant_id, platform, store_id, order_id, sku, marketplace, "
            "order_date, live, category) VALUES ($1, $2, $3, $4, $5, $6, $7::text::date, $8, $9)",
            ORDER_SKUS,
        )
        await conn.execute(
            "INSERT INTO daily_sku_orders VALUES ('t1', '2026-04-10', 'amazon', 's1', 'US', 'LAMP', 2, 3)"
        )

    await asyncio.to_thread(upgrade, "metrics", url, "0012")
    day = date(2026, 4, 10)
    assert await sku_orders(url) == {
        ("t1", day, "amazon", "s1", "US", "LAMP", 2, 2, "home"),
        ("t1", day, "amazon", "s1", "US", "LAMP", 0, 1, "outdoor"),
    }
    await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0011")
    assert await sku_orders(url) == {("t1", day, "amazon", "s1", "US", "LAMP", 2, 3)}


async def test_store_measures_are_filled_from_the_sku_measures(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0012")
    async with schema_connection(url, "metrics") as conn:
        await conn.execute(
            """
            INSERT INTO daily_measures VALUES
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'LAMP', 'ad_cost', 'USD', 1.25),
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'RUG', 'ad_cost', 'USD', 2.50),
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'RUG', 'clicks', '', 7)
            """
        )
        await asyncio.to_thread(upgrade, "metrics", url)
        rows = await conn.fetch(
            "SELECT measure, currency, value FROM daily_store_measures ORDER BY measure"
        )
        assert [tuple(r.values()) for r in rows] == [
            ("ad_cost", "USD", Decimal("3.75")),
            ("clicks", "", Decimal(7)),
        ]
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0012")
        assert await conn.fetchval("SELECT to_regclass('daily_store_measures')") is None


async def test_orders_cancelled_whole_are_counted_from_the_orders(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0013")
    async with schema_connection(url, "metrics") as conn:
        # O1 ships a lamp and cancels a rug; O2 cancels its only rug.
        await conn.execute(
            """
            INSERT INTO orders (tenant_id, platform, store_id, order_id, marketplace, order_date,
                                live_lines, lines)
            VALUES ('t1', 'amazon', 's1', 'O1', 'US', '2026-04-10', 1, 2),
                   ('t1', 'amazon', 's1', 'O2', 'US', '2026-04-10', 0, 1)
            """
        )
        await conn.executemany(
            "INSERT INTO order_skus (tenant_id, platform, store_id, order_id, sku, marketplace, "
            "order_date, live, category) VALUES ($1, $2, $3, $4, $5, $6, $7::text::date, $8, $9)",
            [
                ("t1", "amazon", "s1", "O1", "LAMP", "US", "2026-04-10", True, "home"),
                ("t1", "amazon", "s1", "O1", "RUG", "US", "2026-04-10", False, "home"),
                ("t1", "amazon", "s1", "O2", "RUG", "US", "2026-04-10", False, "home"),
            ],
        )
        await conn.execute(
            """
            INSERT INTO daily_sku_orders VALUES
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'LAMP', 1, 1, 'home'),
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'RUG', 0, 2, 'home')
            """
        )
        await conn.execute(
            "INSERT INTO daily_category_orders VALUES "
            "('t1', '2026-04-10', 'amazon', 's1', 'US', 'home', 1, 2)"
        )
        await asyncio.to_thread(upgrade, "metrics", url, "0014")
        by_sku = await conn.fetch("SELECT sku, cancelled FROM daily_sku_orders ORDER BY sku")
        assert [tuple(r.values()) for r in by_sku] == [("LAMP", 0), ("RUG", 1)]
        assert await conn.fetchval("SELECT cancelled FROM daily_category_orders") == 1
        live = await conn.fetch("SELECT order_id, sku, order_live FROM order_skus ORDER BY 1, 2")
        assert [tuple(r.values()) for r in live] == [
            ("O1", "LAMP", True),
            ("O1", "RUG", True),
            ("O2", "RUG", False),
        ]
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0013")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE column_name = 'cancelled'"
            )
            == 0
        )


async def test_order_skus_keep_every_category_of_a_sku_and_lose_them_again(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0014")
    async with schema_connection(url, "metrics") as conn:
        # O1 holds DESK under two categories; 0014 kept only the greatest.
        await conn.execute(
            """
            INSERT INTO order_lines (tenant_id, event_id, version, platform, store_id,
                marketplace, order_id, line_id, sku, category, status, quantity, currency,
                unit_price, shipping, discount, tax, purchased_at, local_date)
            VALUES
              ('t1', 'e1', 1, 'amazon', 's1', 'US', 'O1', '1', 'DESK', 'desks', 'shipped', 1,
               'USD', 5, 0, 0, 0, '2026-04-10T18:00:00Z', '2026-04-10'),
              ('t1', 'e2', 1, 'amazon', 's1', 'US', 'O1', '2', 'DESK', 'office', 'cancelled', 1,
               'USD', 7, 0, 0, 0, '2026-04-10T18:00:00Z', '2026-04-10');
            INSERT INTO orders VALUES ('t1', 'amazon', 's1', 'O1', 'US', '2026-04-10', 1, 2);
            INSERT INTO order_skus (tenant_id, platform, store_id, order_id, sku, marketplace,
                order_date, live, category, order_live)
            VALUES ('t1', 'amazon', 's1', 'O1', 'DESK', 'US', '2026-04-10', true, 'office', true);
            INSERT INTO daily_sku_orders VALUES
              ('t1', '2026-04-10', 'amazon', 's1', 'US', 'DESK', 1, 1, 'office', 0);
            INSERT INTO daily_category_orders VALUES
              ('t1', '2026-04-10', 'amazon', 's1', 'US', 'office', 1, 1, 0);
            """
        )
        await asyncio.to_thread(upgrade, "metrics", url)
        held = await conn.fetch("SELECT sku, category, live FROM order_skus ORDER BY category")
        assert [tuple(r.values()) for r in held] == [
            ("DESK", "desks", True),
            ("DESK", "office", False),
        ]
        by_sku = await conn.fetch("SELECT sku, orders, orders_all FROM daily_sku_orders")
        assert [tuple(r.values()) for r in by_sku] == [("DESK", 1, 1)]
        by_category = await conn.fetch(
            "SELECT category, orders, orders_all FROM daily_category_orders ORDER BY category"
        )
        assert [tuple(r.values()) for r in by_category] == [("desks", 1, 1), ("office", 0, 1)]
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0014")
        back = await conn.fetch("SELECT sku, category, orders FROM daily_sku_orders")
        assert [tuple(r.values()) for r in back] == [("DESK", "office", 1)]


async def test_unit_costs_learn_their_store_from_the_kept_events(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0016")
    async with schema_connection(url, "metrics") as conn:
        await conn.execute(
            """
            INSERT INTO events_raw VALUES ('t1', 'c1', 'unit_cost', 1, 'amazon', 's1', 'US',
                '2026-04-01T00:00:00Z', '{"sku": "LAMP", "cost": {"amount": "3", "currency": "USD"},
                "effective_from": "2026-01-01"}');
            INSERT INTO unit_costs VALUES ('t1', 'c1', 'LAMP', '2026-01-01', 3, 'USD');
            """
        )
        await asyncio.to_thread(upgrade, "metrics", url, "0017")
        row = await conn.fetchrow("SELECT platform, store_id FROM unit_costs")
        assert tuple(row.values()) == ("amazon", "s1")
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0016")
        columns = list((await conn.fetchrow("SELECT * FROM unit_costs")).keys())
        assert columns == ["tenant_id", "event_id", "sku", "effective_from", "cost", "currency"]


async def test_shipments_cancelled_before_shipping_are_taken_out_of_the_due(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0017")
    cancelled = (
        '{"order_id": "1", "promised_ship_by": "2026-04-11T02:00:00Z",'
        ' "cancelled_by_seller_before_ship": true}'
    )
    # Shipped after all: a shipment like any other.
    shipped = (
        '{"order_id": "2", "promised_ship_by": "2026-04-11T02:00:00Z",'
        ' "shipped_at": "2026-04-11T01:00:00Z", "cancelled_by_seller_before_ship": true}'
    )
    async with schema_connection(url, "metrics") as conn:
        await conn.execute(
            f"""
            INSERT INTO events_raw VALUES
                ('t1', 'c1', 'shipment', 1, 'amazon', 's1', 'US', '2026-04-01T00:00:00Z',
                 '{cancelled}'),
                ('t1', 'c2', 'shipment', 1, 'amazon', 's1', 'US', '2026-04-01T00:00:00Z',
                 '{shipped}'),
                ('t1', 'c3', 'shipment', 1, 'amazon', 'tokyo', 'US', '2026-04-01T00:00:00Z',
                 '{cancelled}');
            INSERT INTO store_timezones (tenant_id, store_id, timezone)
                VALUES ('t1', 'tokyo', 'Asia/Tokyo');
            """
        )
        # 02:00 UTC on the 11th is the 10th in Los Angeles, the 11th in Tokyo.
        for store, day, due, unshipped in (
            ("s1", "2026-04-10", 2, 1),
            ("tokyo", "2026-04-11", 1, 1),
        ):
            for measure, value in (("shipments_due", due), ("shipments_unshipped", unshipped)):
                await conn.execute(
                    "INSERT INTO daily_measures VALUES ('t1', $1, 'amazon', $2, 'US', '', $3, '', $4)",
                    date.fromisoformat(day), store, measure, value,
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO daily_store_measures VALUES ('t1', $1, $2, 'amazon', $3, 'US', '', $4)",
                    measure, date.fromisoformat(day), store, value,
                )  # fmt: skip

        async def cells() -> set[tuple[object, ...]]:
            per_sku = await conn.fetch(
                "SELECT store_id, measure, value FROM daily_measures WHERE value <> 0"
            )
            per_store = await conn.fetch(
                "SELECT store_id, measure, value FROM daily_store_measures WHERE value <> 0"
            )
            assert {tuple(r.values()) for r in per_sku} == {tuple(r.values()) for r in per_store}
            return {tuple(r.values()) for r in per_sku}

        before = await cells()
        await asyncio.to_thread(upgrade, "metrics", url, "0018")
        assert await cells() == {("s1", "shipments_due", Decimal(1))}
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0017")
        assert await cells() == before


async def test_open_shipments_are_found_in_the_kept_events(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0018")
    promise = '"promised_ship_by": "2026-04-11T02:00:00+00:00"'
    payloads = {
        "open": f'{{"order_id": "1", {promise}}}',
        "shipped": f'{{"order_id": "2", {promise}, "shipped_at": "2026-04-11T01:00:00Z"}}',
        "cancelled": f'{{"order_id": "3", {promise}, "cancelled_by_seller_before_ship": true}}',
        "kept": f'{{"order_id": "4", {promise}, "cancelled_by_seller_before_ship": false}}',
    }
    async with schema_connection(url, "metrics") as conn:
        for event_id, payload in payloads.items():
            await conn.execute(
                "INSERT INTO events_raw VALUES ('t1', $1, 'shipment', 1, 'amazon', 's1', 'US', "
                "'2026-04-01T00:00:00Z', $2::jsonb)",
                event_id,
                payload,
            )
        await asyncio.to_thread(upgrade, "metrics", url, "0019")
        rows = await conn.fetch("SELECT event_id, promised_ship_by FROM open_shipments")
        assert sorted(r["event_id"] for r in rows) == ["kept", "open"]
        assert {r["promised_ship_by"].isoformat() for r in rows} == {"2026-04-11T02:00:00+00:00"}
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0018")
        assert await conn.fetchval("SELECT to_regclass('open_shipments')") is None


async def test_a_warehouse_keeps_only_its_latest_snapshot_of_a_date(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0019")
    snapshots = [
        # event id, SKU, warehouse, on hand, counted at
        ("morning", "A", "wh1", 10, "2026-04-10T09:00:00Z"),
        ("evening", "A", "wh1", 7, "2026-04-10T18:00:00Z"),
        ("other", "A", "wh2", 5, "2026-04-10T09:00:00Z"),
        ("b1", "B", "wh1", 3, "2026-04-10T09:00:00Z"),
        # The same instant: the greater event id is the later.
        ("b2", "B", "wh1", 0, "2026-04-10T09:00:00Z"),
    ]
    async with schema_connection(url, "metrics") as conn:
        for event_id, sku, warehouse, on_hand, at in snapshots:
            payload = (
                f'{{"date": "2026-04-10", "sku": "{sku}", "warehouse": "{warehouse}", '
                f'"on_hand": {on_hand}}}'
            )
            await conn.execute(
                "INSERT INTO events_raw VALUES ('t1', $1, 'inventory_snapshot', 1, 'amazon', "
                "'s1', 'US', $2::text::timestamptz, $3::jsonb)",
                event_id, at, payload,
            )  # fmt: skip
        # As the consumer added them up: every snapshot in.
        day = date(2026, 4, 10)
        for sku, measure, value in (
            ("A", "on_hand", 22), ("A", "snapshots", 3), ("B", "on_hand", 3), ("B", "snapshots", 2),
        ):  # fmt: skip
            await conn.execute(
                "INSERT INTO daily_measures VALUES ('t1', $1, 'amazon', 's1', 'US', $2, $3, '', $4)",
                day, sku, measure, value,
            )  # fmt: skip
        for measure, value in (("on_hand", 25), ("snapshots", 5)):
            await conn.execute(
                "INSERT INTO daily_store_measures VALUES ('t1', $1, $2, 'amazon', 's1', 'US', '', $3)",
                measure, day, value,
            )  # fmt: skip

        async def cells() -> dict[tuple[str, str], Decimal]:
            per_sku = await conn.fetch("SELECT sku, measure, value FROM daily_measures")
            per_store = await conn.fetch("SELECT measure, value FROM daily_store_measures")
            found = {(r["sku"], r["measure"]): r["value"] for r in per_sku}
            found.update({("", r["measure"]): r["value"] for r in per_store})
            return found

        before = await cells()
        await asyncio.to_thread(upgrade, "metrics", url, "0020")
        assert await cells() == {
            ("A", "on_hand"): 12, ("A", "snapshots"): 2, ("B", "on_hand"): 0,
            ("B", "snapshots"): 1, ("", "on_hand"): 12, ("", "snapshots"): 3,
        }  # fmt: skip
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0019")
        assert await cells() == before


async def test_rows_every_fact_left_are_deleted(fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0020")
    day = date(2026, 4, 10)
    async with schema_connection(url, "metrics") as conn:
        for store, lines in (("emptied", 0), ("kept", 1)):
            await conn.execute(
                "INSERT INTO daily_sales VALUES ('t1', $1, 'amazon', $2, 'US', 'SKU', '', 'USD', "
                "$3::int, 0, 0, 0, $3::int, $3::int)",
                day, store, lines,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO daily_store_sales VALUES ('t1', $1, 'amazon', $2, 'US', 'USD', "
                "$3::int, 0, 0, 0, $3::int, $3::int)",
                day, store, lines,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO daily_orders VALUES ('t1', $1, 'amazon', $2, 'US', $3, $3)",
                day, store, lines,
            )  # fmt: skip
            for table, column in (("daily_sku_orders", "SKU"), ("daily_category_orders", "home")):
                await conn.execute(
                    f"INSERT INTO {table} VALUES ('t1', $1, 'amazon', $2, 'US', $3, $4, $4, 0)",
                    day, store, column, lines,
                )  # fmt: skip
        # Cancelled orders are data: a row that counts only them stays.
        await conn.execute(
            "INSERT INTO daily_sku_orders VALUES ('t1', $1, 'amazon', 'cancelled', 'US', 'SKU', "
            "0, 1, 1)",
            day,
        )
        await asyncio.to_thread(upgrade, "metrics", url, "0021")
        for table in (
            "daily_sales", "daily_store_sales", "daily_orders", "daily_sku_orders",
            "daily_category_orders",
        ):  # fmt: skip
            stores = {r["store_id"] for r in await conn.fetch(f"SELECT store_id FROM {table}")}
            expected = {"kept", "cancelled"} if table == "daily_sku_orders" else {"kept"}
            assert stores == expected, table


async def test_measure_rows_every_event_left_are_deleted(fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0022")
    day = date(2026, 4, 10)
    async with schema_connection(url, "metrics") as conn:
        # A store whose only fee left; one whose SKUs' fees net to zero (data, kept).
        for sku, store, value in (("A", "left", 0), ("A", "netted", 3), ("B", "netted", -3)):
            await conn.execute(
                "INSERT INTO daily_measures VALUES ('t1', $1, 'amazon', $2, 'US', $3, "
                "'fee_amount', 'USD', $4)",
                day, store, sku, value,
            )  # fmt: skip
        for store in ("left", "netted"):
            await conn.execute(
                "INSERT INTO daily_store_measures VALUES ('t1', 'fee_amount', $1, 'amazon', $2, "
                "'US', 'USD', 0)",
                day, store,
            )  # fmt: skip
        await asyncio.to_thread(upgrade, "metrics", url, "0023")
        per_sku = await conn.fetch("SELECT store_id, sku FROM daily_measures ORDER BY 1, 2")
        assert [tuple(r.values()) for r in per_sku] == [("netted", "A"), ("netted", "B")]
        assert await conn.fetchval("SELECT array_agg(store_id) FROM daily_store_measures") == [
            "netted"
        ]


async def test_sku_categories_are_recomputed_from_the_lines(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0023")
    async with schema_connection(url, "metrics") as conn:
        # LAMP's only line named "home" before a new version dropped it, which left
        # the name behind; RUG's two lines tie on their purchase time.
        await conn.execute(
            """
            INSERT INTO order_lines (tenant_id, event_id, version, platform, store_id,
                marketplace, order_id, line_id, sku, category, status, quantity, currency,
                unit_price, shipping, discount, tax, purchased_at, local_date)
            VALUES
              ('t1', 'e1', 2, 'amazon', 's1', 'US', 'O1', '1', 'LAMP', '', 'shipped', 1,
               'USD', 5, 0, 0, 0, '2026-04-10T18:00:00Z', '2026-04-10'),
              ('t1', 'e2', 1, 'amazon', 's1', 'US', 'O2', '1', 'RUG', 'rugs', 'shipped', 1,
               'USD', 5, 0, 0, 0, '2026-04-10T18:00:00Z', '2026-04-10'),
              ('t1', 'e3', 1, 'amazon', 's1', 'US', 'O3', '1', 'RUG', 'floor', 'shipped', 1,
               'USD', 5, 0, 0, 0, '2026-04-10T18:00:00Z', '2026-04-10');
            INSERT INTO sku_categories VALUES
              ('t1', 'LAMP', 'home', '2026-04-10T18:00:00Z'),
              ('t1', 'RUG', 'rugs', '2026-04-10T18:00:00Z');
            INSERT INTO store_sku_categories VALUES
              ('t1', 'amazon', 's1', 'US', 'LAMP', 'home', '2026-04-10T18:00:00Z');
            """
        )
        await asyncio.to_thread(upgrade, "metrics", url, "0024")
        for table in ("sku_categories", "store_sku_categories"):
            named = await conn.fetch(f"SELECT sku, category, event_id FROM {table} ORDER BY sku")
            assert [tuple(r.values()) for r in named] == [("RUG", "floor", "e3")], table
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0023")
        assert await conn.fetchval("SELECT count(*) FROM sku_categories") == 1


async def test_measure_cells_count_one_fact_a_row(fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0024")
    day = date(2026, 4, 10)
    async with schema_connection(url, "metrics") as conn:
        for sku, value in (("A", 3), ("B", -3)):
            await conn.execute(
                "INSERT INTO daily_measures VALUES ('t1', $1, 'amazon', 's1', 'US', $2, "
                "'fee_amount', 'USD', $3)",
                day, sku, value,
            )  # fmt: skip
        # A store row with no per-SKU rows left (none should be, but a row counts one).
        for store in ("s1", "s2"):
            await conn.execute(
                "INSERT INTO daily_store_measures VALUES ('t1', 'fee_amount', $1, 'amazon', $2, "
                "'US', 'USD', 0)",
                day, store,
            )  # fmt: skip
        await asyncio.to_thread(upgrade, "metrics", url, "0025")
        per_sku = await conn.fetch("SELECT sku, facts FROM daily_measures ORDER BY sku")
        assert [tuple(r.values()) for r in per_sku] == [("A", 1), ("B", 1)]
        per_store = await conn.fetch("SELECT store_id, facts FROM daily_store_measures ORDER BY 1")
        assert [tuple(r.values()) for r in per_store] == [("s1", 2), ("s2", 1)]
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0024")
        assert await conn.fetchval("SELECT count(*) FROM daily_measures") == 2


async def test_a_stores_snapshot_under_another_marketplace_no_longer_adds_up(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0026")
    day = date(2026, 4, 10)
    snapshots = [
        # event id, marketplace, SKU, on hand, counted at
        ("a-am", "US", "A", 10, "2026-04-10T08:00:00Z"),
        ("a-pm", "MX", "A", 20, "2026-04-10T20:00:00Z"),
        ("b-am", "US", "B", 0, "2026-04-10T08:00:00Z"),
        ("b-pm", "MX", "B", 7, "2026-04-10T20:00:00Z"),
    ]
    async with schema_connection(url, "metrics") as conn:
        for event_id, marketplace, sku, on_hand, at in snapshots:
            payload = (
                f'{{"date": "2026-04-10", "sku": "{sku}", "warehouse": "wh1", '
                f'"on_hand": {on_hand}}}'
            )
            await conn.execute(
                "INSERT INTO events_raw (tenant_id, event_id, type, version, platform, store_id,"
                " marketplace, occurred_at, payload) VALUES ('t1', $1, 'inventory_snapshot', 1,"
                " 'amazon', 's1', $2, $3::text::timestamptz, $4::jsonb)",
                event_id, marketplace, at, payload,
            )  # fmt: skip
        # As the consumer counted them: each marketplace's latest, so all four.
        cells = [
            # marketplace, SKU, measure, value
            ("US", "A", "on_hand", 10), ("US", "A", "snapshots", 1),
            ("MX", "A", "on_hand", 20), ("MX", "A", "snapshots", 1),
            ("US", "B", "on_hand", 0), ("US", "B", "snapshots", 1),
            ("MX", "B", "on_hand", 7), ("MX", "B", "snapshots", 1),
        ]  # fmt: skip
        for marketplace, sku, measure, value in cells:
            await conn.execute(
                "INSERT INTO daily_measures (tenant_id, local_date, platform, store_id,"
                " marketplace, sku, measure, currency, value, facts)"
                " VALUES ('t1', $1, 'amazon', 's1', $2, $3, $4, '', $5, 1)",
                day, marketplace, sku, measure, value,
            )  # fmt: skip
        for marketplace, measure, value in (
            ("US", "on_hand", 10), ("US", "snapshots", 2), ("MX", "on_hand", 27), ("MX", "snapshots", 2),
        ):  # fmt: skip
            await conn.execute(
                "INSERT INTO daily_store_measures (tenant_id, measure, local_date, platform,"
                " store_id, marketplace, currency, value, facts)"
                " VALUES ('t1', $1, $2, 'amazon', 's1', $3, '', $4, 2)",
                measure, day, marketplace, value,
            )  # fmt: skip

        async def counted() -> set[tuple[object, ...]]:
            per_sku = await conn.fetch(
                "SELECT marketplace, sku, measure, value, facts FROM daily_measures"
            )
            per_store = await conn.fetch(
                "SELECT marketplace, '' AS sku, measure, value, facts FROM daily_store_measures"
            )
            return {tuple(r.values()) for r in [*per_sku, *per_store]}

        before = await counted()
        await asyncio.to_thread(upgrade, "metrics", url, "0027")
        # Only the evening counts are left: US's rows emptied are gone.
        assert await counted() == {
            ("MX", "A", "on_hand", 20, 1), ("MX", "A", "snapshots", 1, 1),
            ("MX", "B", "on_hand", 7, 1), ("MX", "B", "snapshots", 1, 1),
            ("MX", "", "on_hand", 27, 2), ("MX", "", "snapshots", 2, 2),
        }  # fmt: skip
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0026")
        assert await counted() == before


async def test_sku_day_stock_is_filled_from_the_cells_of_every_store(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "metrics", url, "0027")
    async with schema_connection(url, "metrics") as conn:
        await conn.execute(
            """
            INSERT INTO daily_measures (tenant_id, local_date, platform, store_id, marketplace,
                                        sku, measure, currency, value, facts) VALUES
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'LAMP', 'on_hand', '', 0, 1),
                ('t1', '2026-04-10', 'amazon', 's1', 'US', 'LAMP', 'snapshots', '', 1, 1),
                ('t1', '2026-04-10', 'amazon', 's1', 'MX', 'LAMP', 'on_hand', '', 6, 1),
                ('t1', '2026-04-10', 'amazon', 's1', 'MX', 'LAMP', 'snapshots', '', 2, 2),
                ('t1', '2026-04-10', 'shopify', 's2', 'US', 'RUG', 'snapshots', '', 1, 1),
                ('t1', '2026-04-10', 'shopify', 's2', 'US', 'RUG', 'clicks', '', 7, 1)
            """
        )
        await asyncio.to_thread(upgrade, "metrics", url, "0028")
        rows = await conn.fetch(
            "SELECT tenant_id, local_date, sku, on_hand, snapshots FROM daily_sku_stock ORDER BY sku"
        )
        day = date(2026, 4, 10)
        assert [tuple(r.values()) for r in rows] == [
            ("t1", day, "LAMP", Decimal(6), Decimal(3)),
            ("t1", day, "RUG", Decimal(0), Decimal(1)),
        ]
        await asyncio.to_thread(command.downgrade, alembic_config("metrics", url), "0027")
        assert await conn.fetchval("SELECT to_regclass('daily_sku_stock')") is None
