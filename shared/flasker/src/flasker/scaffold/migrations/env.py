"""Alembic environment of a flasker project (written by flasker; edit freely)."""

from __future__ import annotations

from alembic import context

from flasker import current_project

# The tables of the project's models (their registry is the project's own).
target_metadata = current_project.metadata


def run_migrations_offline() -> None:
    """Emit SQL to standard output (``flasker db upgrade --sql``)."""
    engine = current_project.engine
    context.configure(
        url=engine.url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=engine.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with current_project.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            # SQLite alters tables by copying them; batch mode does that for Alembic.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
