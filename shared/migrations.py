"""Alembic, run the same way for every service: its own schema and version table.

``services/<name>/migrations/env.py`` calls :func:`run_env`; the launcher and the
tests call :func:`upgrade` for each service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("lodestar.schema", service)
    config.attributes["database_url"] = database_url
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Brings ``service``'s schema to ``revision``; call it outside a running event loop."""
    command.upgrade(alembic_config(service, database_url), revision)


def _migrate(connection: Connection, schema: str) -> None:
    context.configure(
        connection=connection,
        version_table_schema=schema,
        include_schemas=False,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(database_url: str, schema: str) -> None:
    engine = create_async_engine(
        sqlalchemy_url(database_url),
        connect_args={"server_settings": {"search_path": f"{schema},public"}},
    )
    try:
        async with engine.connect() as connection:
            # Two replicas' init containers migrate one schema at once on a first
            # deploy: the second waits, then finds it at head (it raised
            # DuplicateTable). A session lock, as each migration commits on its own;
            # closing the connection (dispose, below) lets it go, whatever happened.
            await connection.execute(
                text("SELECT pg_advisory_lock(hashtext('lodestar.migrate:' || :schema))"),
                {"schema": schema},
            )
            await connection.commit()
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await connection.commit()
            await connection.run_sync(_migrate, schema)
            await connection.commit()
    finally:
        await engine.dispose()


def run_env() -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    schema = config.get_main_option("lodestar.schema")
    database_url = config.attributes.get("database_url")
    if not schema or not database_url:
        raise RuntimeError("run migrations through shared.migrations.upgrade()")
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported")
    asyncio.run(_run_online(database_url, schema))


def main(argv: list[str]) -> int:
    """``python -m shared.migrations <service>...``: what deploys run before a service starts."""
    import os

    services = argv or ["gateway", "ingest", "metrics", "targets"]
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        print("DATABASE_URL is required")
        return 2
    for service in services:
        if not (SERVICES_DIR / service / "migrations").is_dir():
            print(f"unknown service {service}")
            return 2
        upgrade(service, database_url)
        print(f"{service}: migrated to head")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
