"""Houses and cats, and when beat last ran.

Revision ID: fe0eb4fe1ef8
Revises: (none: the first revision)
Create Date: 2026-11-21 18:45:50.755816
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fe0eb4fe1ef8"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "beat_runs",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_beat_runs")),
    )
    op.create_table(
        "houses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_houses")),
        sa.UniqueConstraint("name", name=op.f("uq_houses_name")),
    )
    op.create_table(
        "cats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("house_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["house_id"], ["houses.id"],
                                name=op.f("fk_cats_house_id_houses"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cats")),
    )
    op.create_index(op.f("ix_cats_house_id"), "cats", ["house_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cats_house_id"), table_name="cats")
    op.drop_table("cats")
    op.drop_table("houses")
    op.drop_table("beat_runs")
