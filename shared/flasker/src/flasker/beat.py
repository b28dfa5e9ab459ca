"""Celery beat's scheduler for flasker: a heartbeat file, and one beat per project.

Two beats of one project would send every periodic task twice. With a Redis
broker the scheduler holds a lock key in Redis, renewed on every tick and
expiring three loop intervals after a beat vanishes; a second beat refuses to
start while it is held. With the embedded broker the pid file in the state
folder plays that part.
"""

from __future__ import annotations

import os
import socket
import typing as t
from pathlib import Path

from celery.beat import PersistentScheduler

HEARTBEAT_FILE = "beat-heartbeat"
LOCK_SCHEMES = ("redis://", "rediss://", "unix://")


class BeatLocked(RuntimeError):
    """Another beat of the same project holds the lock."""


def lock_key(app: t.Any) -> str:
    return f"flasker:beat-lock:{app.conf.task_default_queue}"


def silent_limit(app: t.Any) -> int:
    """Seconds after which a beat that has not ticked is taken for gone: three loop intervals.

    Its lock expires then, and its heartbeat counts as stale.
    """
    return int(3 * (app.conf.beat_max_loop_interval or 300))


def _redis(app: t.Any) -> t.Any:
    """A client of the broker when it is Redis, else ``None`` (no lock needed)."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(LOCK_SCHEMES):
        return None
    import redis  # noqa: PLC0415 (installed with celery[redis])

    return redis.Redis.from_url(url)


def locked_message(app: t.Any, holder: bytes | None) -> str:
    return (
        f"Another beat of this project is running ({(holder or b'?').decode()} holds"
        f" '{lock_key(app)}' in Redis): run a single beat per project, or periodic tasks are"
        f" sent twice. If that beat is gone, its lock expires within {silent_limit(app)} s."
    )


def lock_owner() -> str:
    """Who holds the lock: host and pid (a restarted container is the same owner again)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_lock(app: t.Any) -> None:
    """Raise :class:`BeatLocked` when another beat holds the project's lock (before starting)."""
    client = _redis(app)
    if client is None:
        return
    try:
        holder = client.get(lock_key(app))
    finally:
        client.close()
    if holder is not None and holder.decode() != lock_owner():
        raise BeatLocked(locked_message(app, holder))


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Touches ``<state folder>/beat-heartbeat`` on every tick; holds the project's lock."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._lock: t.Any = None
        super().__init__(*args, **kwargs)
        self.heartbeat = Path(self.schedule_filename).with_name(HEARTBEAT_FILE)

    def setup_schedule(self) -> None:
        self._acquire_lock()
        super().setup_schedule()

    def tick(self, *args: t.Any, **kwargs: t.Any) -> float:
        self.heartbeat.touch()
        self._renew_lock()
        return t.cast(float, super().tick(*args, **kwargs))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_lock()

    # -- the lock ---------------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        client = _redis(self.app)
        if client is None:
            return
        owner = lock_owner()
        key = lock_key(self.app)
        if not client.set(key, owner, nx=True, ex=silent_limit(self.app)):
            holder = client.get(key)
            if holder is None or holder.decode() != owner:
                client.close()
                raise BeatLocked(locked_message(self.app, holder))
            client.set(key, owner, ex=silent_limit(self.app))  # ours, from before a restart
        self._lock = (client, owner)

    def _renew_lock(self) -> None:
        if self._lock is None:
            return
        client, owner = self._lock
        key = lock_key(self.app)
        holder = client.get(key)
        if holder is not None and holder.decode() != owner:
            raise BeatLocked(f"Beat lost '{key}' to {holder.decode()}: stopping.")
        client.set(key, owner, ex=silent_limit(self.app))

    def _release_lock(self) -> None:
        if self._lock is None:
            return
        client, owner = self._lock
        self._lock = None
        try:
            key = lock_key(self.app)
            if (client.get(key) or b"").decode() == owner:
                client.delete(key)
        finally:
            client.close()
