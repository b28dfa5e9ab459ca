"""Celery beat's scheduler with a heartbeat file, for health checks."""

from __future__ import annotations

import typing as t
from pathlib import Path

from celery.beat import PersistentScheduler

HEARTBEAT_FILE = "beat-heartbeat"


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Touches ``<state folder>/beat-heartbeat`` on every tick of the scheduler loop."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat = Path(self.schedule_filename).with_name(HEARTBEAT_FILE)

    def tick(self, *args: t.Any, **kwargs: t.Any) -> float:
        self.heartbeat.touch()
        return t.cast(float, super().tick(*args, **kwargs))
