"""A sign-in's family of refresh and access tokens gets an id of its own.

The family was named by its authorization code's hash, so a tenant's export (of its
refresh tokens and issued access tokens) carried the hash of a credential, which no
export holds. Each code now names a random family id, and the families named by a
code's hash so far are given one, the same across the three tables.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_FAMILY_ID = "'fam_' || md5(random()::text || clock_timestamp()::text)"


def upgrade() -> None:
    op.add_column("authorization_codes", sa.Column("family_id", sa.Text, nullable=True))
    op.execute(
        f"CREATE TEMPORARY TABLE renamed_families ON COMMIT DROP AS "
        f"SELECT old, {NEW_FAMILY_ID} AS new FROM ("
        "SELECT code_hash AS old FROM authorization_codes "
        "UNION SELECT family_id FROM refresh_tokens "
        "UNION SELECT family_id FROM issued_access_tokens) AS families"
    )
    for table, column in (
        ("authorization_codes", "code_hash"),
        ("refresh_tokens", "family_id"),
        ("issued_access_tokens", "family_id"),
    ):
        op.execute(
            f"UPDATE {table} SET family_id = renamed_families.new FROM renamed_families "
            f"WHERE {table}.{column} = renamed_families.old"
        )
    op.alter_column("authorization_codes", "family_id", nullable=False)


def downgrade() -> None:
    # The families keep their new ids: a code's hash cannot be found again from them.
    op.drop_column("authorization_codes", "family_id")
