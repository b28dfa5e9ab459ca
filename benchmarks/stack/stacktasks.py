"""The counted task of the stack benchmark: each run writes one row keyed by its task id.

The worker imports it as one more of ``[PROJECT] MODULES`` (``FLASKER__PROJECT__MODULES`` in
the benchmark's compose override). The table is the benchmark's own, outside the project's
metadata and migrations: the benchmark's producer script creates it. A row has its own serial
key, not the task id, so that a task run twice shows as two rows instead of failing.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from flasker import current_project

celery = current_project.celery
db = current_project.db

rows = sa.Table(
    "bench_task_rows", sa.MetaData(),
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # The clock at the insert, not at the transaction's start: the last row marks the end.
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.text("clock_timestamp()")),
)


@celery.task(bind=True)  # type: ignore[untyped-decorator]  # Celery is untyped
def record(self: t.Any, seq: int) -> int:
    """Write this run's row (committed by flasker when the task succeeds)."""
    db.execute(sa.insert(rows).values(task_id=self.request.id, seq=seq))
    return seq
