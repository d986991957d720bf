"""Export archives kept in parts of a megabyte, not in one value of the export's row.

One ``bytea`` holds at most 1 GB and is written and read whole; a large seller's
archive is built in a temporary file and stored, and downloaded, a part at a time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PART_BYTES = 1024 * 1024


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE export_parts (
            export_id text NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
            tenant_id text NOT NULL,
            part integer NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (export_id, part)
        )
        """
    )
    op.execute(
        f"""
        INSERT INTO export_parts (export_id, tenant_id, part, data)
        SELECT id, tenant_id, n, substring(archive FROM n * {PART_BYTES} + 1 FOR {PART_BYTES})
        FROM exports, generate_series(0, (length(archive) - 1) / {PART_BYTES}) AS n
        WHERE length(archive) > 0
        """
    )
    op.execute("ALTER TABLE exports DROP COLUMN archive")


def downgrade() -> None:
    op.execute("ALTER TABLE exports ADD COLUMN archive bytea")
    op.execute(
        """
        UPDATE exports e SET archive = p.archive
        FROM (
            SELECT export_id, string_agg(data, ''::bytea ORDER BY part) AS archive
            FROM export_parts GROUP BY export_id
        ) p
        WHERE p.export_id = e.id
        """
    )
    op.execute("DROP TABLE export_parts")
