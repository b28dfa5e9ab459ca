"""Celery beat's scheduler for flasker: one beat per project, each slot run once, a heartbeat.

Two beats of one project would send every periodic task twice. With a Redis
broker the scheduler holds a lock key in Redis, renewed on every tick and
expiring three loop intervals after a beat vanishes; a second beat refuses to
start while it is held. With the embedded broker the pid file in the state
folder plays that part.

Every run of a periodic task belongs to a *slot*: the time the schedule fell due
(for ``"schedule": 60``, one slot a minute from the entry's first run; for a
crontab, its times). Celery's own scheduler records when it sent an entry in its
schedule file only every three minutes, so a beat killed after sending and
before syncing sends the same slot again when it comes back. Here a slot is
recorded *before* its task is sent, as *pending* with the id of that task, and
marked sent once the broker has it:

- with a Redis broker in the hashes ``flasker:beat-slots:<queue>`` (entry → slot in
  ms since the epoch) and ``flasker:beat-pending:<queue>`` (entry → ``"<slot> <task
  id>"``), by a script that records a slot only when it is later than the one
  recorded (compare-and-set). Two beats computing the same slot, even if the lock
  failed, cannot both send it; a restarted beat reads where it left off.
- with the embedded broker in the schedule file, synced before the send.

A restart after a stop sends the latest slot that fell due meanwhile, once, and
none of the earlier ones. SIGTERM and SIGINT wait until a recorded slot is sent;
only SIGKILL (or a lost host) can stop beat between recording a slot and marking
it sent, and then nobody knows whether the broker got the task. The beat that
starts next finds the slot pending and, unless a later slot has fallen due since
(which it sends instead, as after any stop), sends it again:

- with Redis, always, as a new task. The worker runs only one of the two:
  before running a task that carries a slot, :class:`SlotRuns` claims the key
  ``flasker:beat-ran:<queue>:<entry>:<slot>`` for the task's id (``SET NX EX``);
  a task that finds another task's id there is skipped. A second delivery of the
  *same* task (a retry, a redelivery after its worker died) has the same id and
  runs again: at least once per message, at most once per slot. That is why the
  slot goes out again under a new id: the same id could not tell a duplicate
  from a redelivery.
- with the embedded broker, only when the broker's table holds no message of
  the pending task's id (kombu's SQL transport keeps delivered messages), so no
  worker needs to check anything.
- with another broker it cannot ask, never: the slot may have been lost, which
  beat says in its log.

Each task carries its slot in the ``flasker_beat_slot`` header (ISO 8601, UTC), the
entry's name in ``flasker_beat_entry`` and the slot after it in ``flasker_beat_next``.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import signal
import socket
import threading
import time
import typing as t
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery.beat import PersistentScheduler, event_t
from celery.exceptions import Ignore
from celery.schedules import crontab, schedstate, schedule
from celery.utils.time import maybe_make_aware
from kombu.utils.uuid import uuid

HEARTBEAT_FILE = "beat-heartbeat"
LOCK_SCHEMES = ("redis://", "rediss://", "unix://")
# kombu's SQL transport, the embedded broker's ('sqla+sqlite:///...').
SQL_BROKER_SCHEMES = ("sqla+", "sqlalchemy+")
SLOT_HEADER = "flasker_beat_slot"
ENTRY_HEADER = "flasker_beat_entry"
NEXT_HEADER = "flasker_beat_next"
#: Seconds before a send that failed (the broker unreachable) is tried again.
RETRY_SECONDS = 5.0
#: Redis answers within this, or beat takes it for unreachable and tries again later.
REDIS_TIMEOUT = 5.0
#: The same for a worker's check of a slot (the broker's own socket timeout).
RUN_CHECK_TIMEOUT = 2.0
#: The schedule file's key for the slots recorded and not yet known sent.
PENDING_FILE_KEY = "flasker_pending"
# How long a worker remembers which task ran a slot, beyond two intervals: a day,
# or 1,000 intervals when that is shorter (at most ~1,000 keys for an entry due
# every second), and a day for a task whose header does not give the next slot.
_DAY = 86400
_RUN_INTERVALS = 1000
# The window searches of latest_fire: at most about 60 steps of the schedule each.
_LOOKBACKS = tuple(timedelta(seconds=s) for s in (60, 3600, 86400, 31 * 86400, 366 * 86400))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

logger = logging.getLogger(__name__)

# KEYS: slots hash, pending hash; ARGV: entry, slot (ms), "<slot> <task id>".
# Returns {1, previous slot or ''} when recorded, {0, recorded slot} when not later.
_CLAIM = """
local recorded = redis.call('HGET', KEYS[1], ARGV[1])
if recorded and tonumber(recorded) >= tonumber(ARGV[2]) then return {0, recorded} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {1, recorded or ''}
"""
# KEYS: slots hash, pending hash; ARGV: entry, slot (ms), previous slot or ''.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
  else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
# A pending slot about to go out again under a new task id, unless a later slot was
# recorded or the slot was dealt with meanwhile (by another beat whose lock failed).
# KEYS: slots hash, pending hash; ARGV: entry, slot (ms), "<slot> <new task id>".
_REPEND = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local pending = redis.call('HGET', KEYS[2], ARGV[1])
if not pending or string.sub(pending, 1, #ARGV[2] + 1) ~= ARGV[2] .. ' ' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


class BeatLocked(RuntimeError):
    """Another beat of the same project holds the lock."""


class BrokerUnreachable(RuntimeError):
    """Beat cannot ask Redis for the lock when it starts."""


def lock_key(app: t.Any) -> str:
    return f"flasker:beat-lock:{app.conf.task_default_queue}"


def slots_key(app: t.Any) -> str:
    """The hash of the last slot recorded for each entry."""
    return f"flasker:beat-slots:{app.conf.task_default_queue}"


def pending_key(app: t.Any) -> str:
    """The hash of the slots recorded whose task is not yet known to be sent."""
    return f"flasker:beat-pending:{app.conf.task_default_queue}"


def ran_key(app: t.Any, entry: str, slot: str) -> str:
    """The key naming the task that ran ``slot`` of ``entry`` (``slot`` as the header has it)."""
    return f"flasker:beat-ran:{app.conf.task_default_queue}:{entry}:{slot}"


def silent_limit(app: t.Any) -> int:
    """Seconds after which a beat that has not ticked is taken for gone: three loop intervals.

    Its lock expires then, and its heartbeat counts as stale.
    """
    return int(3 * (app.conf.beat_max_loop_interval or 300))


def _redis(app: t.Any, timeout: float = REDIS_TIMEOUT) -> t.Any:
    """A client of the broker when it is Redis, else ``None`` (no lock needed)."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(LOCK_SCHEMES):
        return None
    import redis  # noqa: PLC0415 (optional: needed with a Redis broker only)

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis  # noqa: PLC0415 (optional: needed with a Redis broker only)
    except ImportError:
        return ()
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


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
    """Raise :class:`BeatLocked` when another beat holds the project's lock (before starting).

    :raises BrokerUnreachable: when Redis does not answer.
    """
    client = _redis(app)
    if client is None:
        return
    try:
        holder = client.get(lock_key(app))
    except _unreachable_errors() as e:
        raise BrokerUnreachable(
            f"Beat cannot reach the broker's Redis to take its lock ({e}): start Redis, or"
            " check 'CELERY.broker_url'."
        ) from e
    finally:
        client.close()
    if holder is not None and holder.decode() != lock_owner():
        raise BeatLocked(locked_message(app, holder))


# -- slots ------------------------------------------------------------------------------------


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: slots compare and add exactly."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def slot_text(slot: datetime) -> str:
    """The slot as the header carries it: ISO 8601 in UTC, to the millisecond."""
    return slot.astimezone(UTC).isoformat(timespec="milliseconds")


def _interval_ms(when: t.Any) -> int | None:
    """The period of a plain interval schedule in ms, else ``None``."""
    if type(when) is schedule and not when.relative:
        return max(int(when.run_every // timedelta(milliseconds=1)), 1)
    return None


def next_fire(when: t.Any, after: datetime) -> datetime:
    """The first time the schedule ``when`` falls due strictly after ``after``."""
    period = _interval_ms(when)
    if period is not None:
        return from_ms(to_ms(after) + period)
    if isinstance(when, crontab):
        start, delta, _ = when.remaining_delta(after)
        return t.cast(datetime, start + delta)
    # Another kind (solar, one of the user's): its estimate is relative to its clock;
    # whole seconds keep two reckonings of one slot equal.
    fire = when.now() + when.remaining_estimate(after)
    return from_ms(round(to_ms(fire) / 1000) * 1000)


def latest_fire(when: t.Any, last: datetime, now: datetime) -> datetime | None:
    """The latest time after ``last`` and not after ``now`` that ``when`` fell due, if any.

    After a long stop this is the one slot to catch up; the ones before it are skipped.
    """
    period = _interval_ms(when)
    if period is not None:
        last_ms, now_ms = to_ms(last), to_ms(now)
        if now_ms < last_ms + period:
            return None
        return from_ms(last_ms + (now_ms - last_ms) // period * period)
    if next_fire(when, last) > now:
        return None
    # Search back from now in growing windows, so that a schedule stopped for a year
    # costs a few dozen steps rather than one per missed slot.
    for lookback in (*_LOOKBACKS, now - last):
        fire = next_fire(when, max(last, now - lookback))
        if fire <= now:
            while (following := next_fire(when, fire)) <= now:
                fire = following
            return fire
    return None  # unreachable: the last window starts at ``last``


@contextmanager
def signals_held() -> t.Iterator[None]:
    """SIGTERM and SIGINT wait until the block ends, then reach their handlers.

    A slot recorded must be sent, or given back: a stop must not fall between.
    Only the main thread can change handlers; elsewhere (beat embedded in a
    worker) the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def _stop(signum: int, frame: t.Any) -> None:
    raise SystemExit()


def stop_on_signals(**_: t.Any) -> None:
    """SIGTERM and SIGINT end beat's loop, whose ``finally`` closes the scheduler.

    Connected to Celery's ``beat_init`` signal by ``flasker beat``. Celery's own
    handler closes the scheduler inside the handler, in the middle of whatever beat
    was doing: a Redis command, whose connection it closes under it (the command
    then fails, and beat exits 1), or a write of the schedule file.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop)


# -- the worker's side: each slot runs once ---------------------------------------------------


def remember_seconds(slot: str, following: t.Any) -> int:
    """Seconds a worker remembers which task ran ``slot``, whose next slot is ``following``.

    Two tasks for one slot exist only when a restarted beat sent the slot again, which
    it does before the next slot falls due: they were sent less than an interval apart
    and run at most an interval plus the later one's wait in the queue apart. Two
    intervals and a day of waiting cover that; for an entry due more often than every
    86 s, two intervals and 1,000 more, so that an entry keeps at most about 1,000 keys.
    A header without the next slot (set by hand, not by beat) gets a day.
    """
    try:
        interval = (datetime.fromisoformat(following)
                    - datetime.fromisoformat(slot)).total_seconds()
    except (TypeError, ValueError):  # missing, malformed, or naive against aware
        return _DAY
    interval = max(interval, 1.0)
    return math.ceil(2 * interval + min(_DAY, _RUN_INTERVALS * interval))


class SlotRuns:
    """The worker's half of "each slot runs once": which task ran each slot, in Redis.

    flasker's task class asks it before running a task that carries a slot (a task
    without one costs nothing). With a Redis broker only: the embedded broker's beat
    never sends a slot twice, and other brokers have no Redis to ask.
    """

    def __init__(self) -> None:
        # One client per broker and process (redis-py starts a fresh pool after a fork).
        self._clients: dict[str, t.Any] = {}

    def _client(self, app: t.Any) -> t.Any:
        url = str(app.conf.broker_url or "")
        if url not in self._clients:
            self._clients[url] = _redis(app, RUN_CHECK_TIMEOUT)
        return self._clients[url]

    def ran_by(self, task: t.Any) -> str | None:
        """The id of *another* task that ran this task's slot, else ``None``: it runs.

        Claims the slot for this task's id when no task has (``SET NX EX``, one round
        trip); a second delivery of this same task finds its own id and runs again.

        :raises redis.exceptions.ConnectionError: when Redis cannot be reached (the
            task's outage policy retries it).
        """
        request = task.request
        slot = request.get(SLOT_HEADER)
        client = self._client(task.app)
        if slot is None or client is None:
            return None
        key = ran_key(task.app, str(request.get(ENTRY_HEADER) or task.name), str(slot))
        ttl = remember_seconds(str(slot), request.get(NEXT_HEADER))
        if client.set(key, request.id, nx=True, ex=ttl):
            return None
        holder = client.get(key)  # None when it expired just now: then this task runs
        if holder is None or holder.decode() == request.id:
            return None
        return t.cast(str, holder.decode())

    def run_once(self, task: t.Any) -> None:
        """Return when ``task`` may run; raise :class:`~celery.exceptions.Ignore` when
        another task ran its slot (its result: ``REVOKED``, saying which)."""
        other = self.ran_by(task)
        if other is None:
            return
        request = task.request
        entry = request.get(ENTRY_HEADER) or task.name
        reason = f"slot {request.get(SLOT_HEADER)} of '{entry}' ran as task {other}"
        logger.info("Task %s[%s] skipped: %s already (beat sent the slot twice).",
                    task.name, request.id, reason)
        if not (task.ignore_result or request.ignore_result):
            task.backend.mark_as_revoked(request.id, f"Skipped: {reason}.", request=request)
        raise Ignore(reason)


# -- the scheduler ------------------------------------------------------------------------------


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Touches ``<state folder>/beat-heartbeat`` on every tick; holds the project's lock;
    records each slot before sending it (see the module's docstring)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._client: t.Any = None
        self._owner: str | None = None
        self._scripts: dict[str, t.Any] = {}
        self._unreachable_since: float | None = None
        # Entry → (slot, task id): recorded by a beat that stopped before it knew the
        # task sent, to send again.
        self._resend: dict[str, tuple[datetime, str]] = {}
        super().__init__(*args, **kwargs)
        self.heartbeat = Path(self.schedule_filename).with_name(HEARTBEAT_FILE)

    def setup_schedule(self) -> None:
        self._acquire_lock()
        super().setup_schedule()
        self._load_slots()
        self._load_pending()

    def tick(self, *args: t.Any, **kwargs: t.Any) -> float:
        self.heartbeat.touch()
        try:
            self._renew_lock()
        except _unreachable_errors() as e:
            # Nothing can be sent without the broker; keep ticking until it is back.
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                logger.warning("Beat cannot reach Redis (%s): sending nothing until it"
                               " answers; trying every %g s.", e, RETRY_SECONDS)
            return min(RETRY_SECONDS, float(self.max_interval))
        if self._unreachable_since is not None:
            logger.warning("Beat reaches Redis again after %.0f s.",
                           time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
        return t.cast(float, super().tick(*args, **kwargs))

    def adjust(self, n: float | None, drift: float = 0.005) -> float | None:
        # Celery wakes 10 ms early and then spins until the entry falls due; a slot is
        # due at its time, so wake just after it.
        return t.cast("float | None", super().adjust(n, drift=drift))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_lock()

    # -- slots -------------------------------------------------------------------------------

    def populate_heap(self, event_t: t.Any = event_t, heapify: t.Any = heapq.heapify) -> None:
        """Celery's, asking :meth:`is_due` rather than each entry's own schedule, which
        knows nothing of a slot to send again."""
        self._heap = []
        for entry in self.schedule.values():
            try:
                due, wait = self.is_due(entry)
            except Exception:  # as Celery: the entry is tried again later
                due, wait = self._is_due_failed(entry)
            self._heap.append(event_t(self._when(entry, 0 if due else wait) or 0, 5, entry))
        heapify(self._heap)

    def is_due(self, entry: t.Any) -> tuple[bool, float]:
        now = self.app.now()
        slot, following = self._due(entry, now)
        wait = max((following - now).total_seconds(), 0.0)
        # When due, checked again within RETRY_SECONDS: if the send fails, it stays due.
        state = (schedstate(False, wait) if slot is None
                 else schedstate(True, min(wait, RETRY_SECONDS)))
        return t.cast("tuple[bool, float]", state)

    def _due(self, entry: t.Any, now: datetime) -> tuple[datetime | None, datetime]:
        """The slot to send now, if any, and the next time the entry falls due."""
        last = self._last(entry)
        slot = latest_fire(entry.schedule, last, now)
        if slot is None and entry.name in self._resend:
            slot = self._resend[entry.name][0]  # recorded, perhaps never sent: again
        following = next_fire(entry.schedule, slot or last)
        deadline = self.app.conf.beat_cron_starting_deadline
        if (slot is not None and deadline is not None and isinstance(entry.schedule, crontab)
                and (now - slot).total_seconds() > deadline):
            return None, following  # too old to catch up, as Celery's setting says
        return slot, following

    def reserve(self, entry: t.Any) -> t.Any:
        # Celery advances the entry before sending; here apply_entry advances it once
        # the slot is recorded, and leaves it due when the send fails.
        return entry

    def apply_entry(self, entry: t.Any, producer: t.Any = None) -> None:
        slot, following = self._due(entry, self.app.now())
        if slot is None:
            return
        again = self._resend.pop(entry.name, None)
        if again is not None and again[0] != slot:
            logger.warning("Scheduler: slot %s of '%s' is not sent again: slot %s has fallen"
                           " due since, and goes instead.", slot_text(again[0]), entry.name,
                           slot_text(slot))
            again = None
        task_id = uuid()
        previous = entry.last_run_at
        with signals_held():
            try:
                if again is None:
                    recorded, other = self._record(entry.name, slot, task_id)
                else:
                    recorded, other = self._record_again(entry.name, slot, task_id), None
            except Exception as e:  # the broker's Redis, unreachable: the slot stays due
                if again is not None:
                    self._resend[entry.name] = again
                logger.error("Beat could not record slot %s of '%s' (%s): trying again in"
                             " %g s.", slot_text(slot), entry.name, e, RETRY_SECONDS)
                return
            if not recorded:
                if again is None:
                    self._set_last(entry, max(slot, other or slot))
                logger.warning("Scheduler: slot %s of '%s' was already sent (by another"
                               " beat?): skipped.", slot_text(slot), entry.name)
                return
            if again is None:
                self._set_last(entry, slot)  # the schedule file: without Redis, the record
            try:
                self.apply_async(self._for_slot(entry, slot, following, task_id),
                                 producer=producer, advance=False)
            except Exception as e:  # any failure to send: give the slot back
                if again is None:
                    self._give_back(entry.name, slot, other)
                    self._set_last(entry, previous)
                else:  # still pending, under the new id
                    self._resend[entry.name] = (slot, task_id)
                logger.error("Scheduler: could not send '%s' for slot %s (%s): trying again"
                             " in %g s.", entry.name, slot_text(slot), e, RETRY_SECONDS)
                return
            entry.total_run_count += 1
            self._confirm(entry.name)
            if again is None:
                note = ""
            elif self._client is None:
                note = f" (again: task {again[1]} never reached the broker)"
            else:
                note = f" (again: task {again[1]} may have been sent too; workers run one)"
            logger.info("Scheduler: Sent due task %s (%s) for slot %s, id %s%s", entry.name,
                        entry.task, slot_text(slot), task_id, note)

    def _set_last(self, entry: t.Any, when: datetime) -> None:
        """Set the entry's last slot and write the schedule file.

        Through ``self.schedule``: the shelve writes back the objects its cache holds,
        and each sync empties that cache.
        """
        entry.last_run_at = when
        self.schedule[entry.name] = entry
        self.sync()

    def _last(self, entry: t.Any) -> datetime:
        return t.cast(datetime, maybe_make_aware(entry.last_run_at, self.app.timezone))

    def _for_slot(self, entry: t.Any, slot: datetime, following: datetime, task_id: str
                  ) -> t.Any:
        """A copy of ``entry`` whose task carries its slot and a known id."""
        options = dict(entry.options)
        options["headers"] = {**options.get("headers", {}), SLOT_HEADER: slot_text(slot),
                              ENTRY_HEADER: entry.name, NEXT_HEADER: slot_text(following)}
        options["task_id"] = task_id
        return entry.__class__(**dict(entry, options=options))

    def _record(self, name: str, slot: datetime, task_id: str) -> tuple[bool, datetime | None]:
        """Record ``slot`` for ``name``, pending under ``task_id``, unless a later or equal
        one is recorded.

        Returns whether it was recorded, and the slot recorded before (or instead).
        """
        if self._client is None:
            # The schedule file, synced by the caller with the entry's last slot.
            self._set_file_pending(name, (to_ms(slot), task_id))
            return True, None
        slot_ms = to_ms(slot)
        done, other = self._script("claim", _CLAIM)(
            keys=[slots_key(self.app), pending_key(self.app)],
            args=[name, slot_ms, f"{slot_ms} {task_id}"],
        )
        return bool(done), from_ms(int(other)) if other else None

    def _record_again(self, name: str, slot: datetime, task_id: str) -> bool:
        """Make the pending ``slot`` of ``name`` pending under ``task_id``, about to be sent
        again; ``False`` if it is no longer pending (another beat dealt with it)."""
        if self._client is None:
            self._set_file_pending(name, (to_ms(slot), task_id))
            self.sync()
            return True
        slot_ms = to_ms(slot)
        return bool(self._script("repend", _REPEND)(
            keys=[slots_key(self.app), pending_key(self.app)],
            args=[name, slot_ms, f"{slot_ms} {task_id}"],
        ))

    def _give_back(self, name: str, slot: datetime, previous: datetime | None) -> None:
        """Forget that ``slot`` was recorded (its send failed); the caller syncs the file."""
        if self._client is None:
            self._set_file_pending(name, None)
            return
        try:
            self._script("release", _RELEASE)(
                keys=[slots_key(self.app), pending_key(self.app)],
                args=[name, to_ms(slot), to_ms(previous) if previous else ""],
            )
        except Exception as e:  # Redis gone: the slot stays recorded, and pending
            logger.error("Beat could not give back slot %s of '%s' (%s): it is sent again"
                         " when beat restarts, else skipped.", slot_text(slot), name, e)

    def _confirm(self, name: str) -> None:
        """Mark the slot of ``name`` sent: it is no longer pending."""
        if self._client is None:
            self._set_file_pending(name, None)
            self.sync()
            return
        try:
            self._client.hdel(pending_key(self.app), name)
        except Exception as e:  # sent all the same; a restart sends it again, run once
            logger.warning("Beat could not mark the send of '%s' in Redis: %s", name, e)

    def _set_file_pending(self, name: str, value: tuple[int, str] | None) -> None:
        """Set (or with ``None`` clear) the pending mark of ``name`` in the schedule file,
        written at the next sync."""
        pending = dict(self._store.get(PENDING_FILE_KEY) or {})
        if value is None:
            pending.pop(name, None)
        else:
            pending[name] = value
        self._store[PENDING_FILE_KEY] = pending  # assigned: the shelve writes back its cache

    def _script(self, name: str, source: str) -> t.Any:
        if name not in self._scripts:
            self._scripts[name] = self._client.register_script(source)
        return self._scripts[name]

    def _load_slots(self) -> None:
        """Start where the last beat left off: Redis is written before every send."""
        if self._client is None:
            return
        recorded = self._client.hgetall(slots_key(self.app))
        for name, entry in self.schedule.items():  # the shelve's cache: synced below
            ms = recorded.get(name.encode())
            if ms is not None:
                entry.last_run_at = from_ms(int(ms))
        self.sync()

    def _load_pending(self) -> None:
        """Find the slots a stopped beat recorded and did not know sent: send them again."""
        for name, (slot_ms, task_id) in self._read_pending().items():
            entry = self.schedule.get(name)
            slot = from_ms(slot_ms)
            if entry is None or to_ms(self._last(entry)) != slot_ms:
                self._drop_pending(name)  # no longer scheduled, or a later slot recorded
                continue
            where = (f"Beat stopped after recording slot {slot_text(slot)} of '{name}' and"
                     f" before it knew task {task_id} sent")
            if self._client is not None:
                logger.warning("%s: sending the slot again as a new task; workers run"
                               " only one of the two.", where)
            else:
                sent = self._in_sql_broker(task_id)
                if sent is None:
                    logger.warning("%s: if that task never ran, the slot was lost (this"
                                   " broker cannot tell; the next slot is sent on time).", where)
                    self._drop_pending(name)
                    continue
                if sent:
                    logger.info("%s: the broker has it; nothing to send again.", where)
                    self._drop_pending(name)
                    continue
                logger.warning("%s: the broker does not have it; sending the slot again.",
                               where)
            self._resend[name] = (slot, task_id)

    def _read_pending(self) -> dict[str, tuple[int, str]]:
        if self._client is None:
            return dict(self._store.get(PENDING_FILE_KEY) or {})
        pending: dict[str, tuple[int, str]] = {}
        for name, value in self._client.hgetall(pending_key(self.app)).items():
            slot_ms, _, task_id = value.decode().partition(" ")
            pending[name.decode()] = (int(slot_ms), task_id)
        return pending

    def _drop_pending(self, name: str) -> None:
        if self._client is None:
            self._set_file_pending(name, None)
            self.sync()
        else:
            self._client.hdel(pending_key(self.app), name)

    def _in_sql_broker(self, task_id: str) -> bool | None:
        """Whether the embedded (SQL) broker holds a message of ``task_id``; ``None`` for
        another broker. kombu's SQL transport keeps the messages it delivered."""
        if not str(self.app.conf.broker_url or "").startswith(SQL_BROKER_SCHEMES):
            return None
        with self.app.connection_for_write() as connection:
            channel = connection.default_channel
            message = channel.message_cls
            try:
                found = (channel.session.query(message.id)
                         .filter(message.payload.contains(task_id)).first())
            finally:
                channel.session.close()
        return found is not None

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
        self._client, self._owner = client, owner

    def _renew_lock(self) -> None:
        if self._client is None:
            return
        key = lock_key(self.app)
        holder = self._client.get(key)
        if holder is not None and holder.decode() != self._owner:
            raise BeatLocked(f"Beat lost '{key}' to {holder.decode()}: stopping.")
        self._client.set(key, self._owner, ex=silent_limit(self.app))

    def _release_lock(self) -> None:
        client, owner = self._client, self._owner
        if client is None:
            return
        self._client = self._owner = None
        self._scripts.clear()
        try:
            key = lock_key(self.app)
            if (client.get(key) or b"").decode() == owner:
                client.delete(key)
        except _unreachable_errors() as e:
            logger.warning("Beat could not release '%s' (%s): it expires within %d s.",
                           lock_key(self.app), e, silent_limit(self.app))
        finally:
            client.close()

