"""The gateway's migrations move what they change, and back where they can."""

from __future__ import annotations

import asyncio
import secrets

from alembic import command

from shared.migrations import alembic_config, upgrade
from tests.conftest import FreshDatabase, schema_connection


async def test_an_archive_kept_in_its_row_moves_into_parts_and_back(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "gateway", url, "0004")
    archive = secrets.token_bytes(2 * 1024 * 1024 + 10)
    async with schema_connection(url, "gateway") as conn:
        await conn.execute(
            "INSERT INTO exports (id, tenant_id, requested_by, status, archive) "
            "VALUES ('ex_1', 't1', 'test', 'ready', $1), ('ex_2', 't1', 'test', 'failed', NULL)",
            archive,
        )
        await asyncio.to_thread(upgrade, "gateway", url)
        parts = await conn.fetch("SELECT * FROM export_parts ORDER BY part")
        assert [(p["export_id"], p["tenant_id"], p["part"]) for p in parts] == [
            ("ex_1", "t1", 0),
            ("ex_1", "t1", 1),
            ("ex_1", "t1", 2),
        ]
        assert b"".join(p["data"] for p in parts) == archive
        await asyncio.to_thread(command.downgrade, alembic_config("gateway", url), "0004")
        kept = await conn.fetch("SELECT id, archive FROM exports ORDER BY id")
        assert [(r["id"], r["archive"]) for r in kept] == [("ex_1", archive), ("ex_2", None)]


async def test_sign_in_families_named_by_a_codes_hash_get_an_id_of_their_own(
    fresh_database: FreshDatabase,
) -> None:
    """An export holds no hash of a credential: the families named by their code's
    hash are renamed, the same in all three tables, and a code not redeemed yet gets
    a family of its own."""
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "gateway", url, "0011")
    redeemed, waiting = "a" * 64, "b" * 64
    async with schema_connection(url, "gateway") as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, reporting_currency) VALUES ('t1', 'Acme', 'USD');"
            "INSERT INTO users (id, tenant_id, email, name, role, created_at, updated_at) "
            "VALUES ('u1', 't1', 'a@example.com', 'A', 'admin', now(), now())"
        )
        for code_hash in (redeemed, waiting):
            await conn.execute(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, tenant_id, "
                "redirect_uri, scope, code_challenge, expires_at) "
                "VALUES ($1, 'c1', 'u1', 't1', 'https://app', 'kpi:read', 'x', now())",
                code_hash,
            )
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, tenant_id, "
            "scope, created_at, expires_at) VALUES "
            "('r1', $1, 'c1', 'u1', 't1', 'kpi:read', now(), now()), "
            "('r2', $1, 'c1', 'u1', 't1', 'kpi:read', now(), now())",
            redeemed,
        )
        await conn.execute(
            "INSERT INTO issued_access_tokens (jti, family_id, tenant_id, expires_at) "
            "VALUES ('j1', $1, 't1', now())",
            redeemed,
        )
        await asyncio.to_thread(upgrade, "gateway", url)
        codes = dict(await conn.fetch("SELECT code_hash, family_id FROM authorization_codes"))
        families = {
            *(r["family_id"] for r in await conn.fetch("SELECT family_id FROM refresh_tokens")),
            *(
                r["family_id"]
                for r in await conn.fetch("SELECT family_id FROM issued_access_tokens")
            ),
        }
        assert families == {codes[redeemed]}
        assert codes[waiting] != codes[redeemed]
        assert all(family.startswith("fam_") for family in codes.values())
