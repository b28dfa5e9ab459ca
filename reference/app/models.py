"""The models: flasker.Model names each table after its class (House → houses).

Schema changes go through Alembic: 'flasker db revision -m ...' writes a migration
into ../migrations, 'flasker db upgrade' applies it (the stack's 'migrate' service).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flasker import Model


class House(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                    server_default=func.now())
    cats: Mapped[list[Cat]] = relationship(back_populates="house", cascade="all, delete-orphan",
                                           passive_deletes=True, order_by="Cat.name")


class Cat(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id", ondelete="CASCADE"),
                                          index=True)
    house: Mapped[House] = relationship(back_populates="cats")


class BeatRun(Model):
    """When a periodic task last ran, and how often: the page shows it."""

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    runs: Mapped[int] = mapped_column(default=0)


class TaskReceipt(Model):
    """One row per task that ran to its end, keyed by the task's id (see tasks.receipt)."""

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    done_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
