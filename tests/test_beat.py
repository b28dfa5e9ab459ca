"""``flasker.beat``: one beat per project (a lock in Redis), each slot run once (sent again
when a killed beat may not have sent it, skipped by the worker when it ran), and the
heartbeat 'ping beat' reads."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import typing as t
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab, schedule

from flasker import Project
from flasker.beat import (
    ENTRY_HEADER,
    HEARTBEAT_FILE,
    NEXT_HEADER,
    SLOT_HEADER,
    BeatLocked,
    BrokerUnreachable,
    HeartbeatScheduler,
    check_lock,
    from_ms,
    latest_fire,
    lock_key,
    lock_owner,
    next_fire,
    pending_key,
    ran_key,
    remember_seconds,
    silent_limit,
    slot_text,
    slots_key,
    to_ms,
)

from .conftest import SECRET, Process, free_port, unique_package, wait_for

# A beat that has not ticked for three loop intervals is taken for gone.
LOOP = 10
SILENT = 3 * LOOP
# One entry, every minute; a test records its last slot a minute back to make it due.
MINUTELY = {"minutely": {"task": "beat.tests.tick", "schedule": 60}}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

Redis = t.Any  # redis.Redis, imported in the fixture (an optional dependency of flasker)


def cfg(broker: str, state: Path, beat_schedule: dict[str, t.Any] | None = None,
        modules: str = "", results: str = "") -> str:
    """A project of a name of its own (the lock's key derives from it), settings in the file.

    The file carries everything, as 'flasker ping beat' and 'flasker beat' read it alone.
    """
    return f"""
        [PROJECT]
        NAME = Beat {unique_package()}
        STATE_FOLDER = {state}
        {f"MODULES = {modules}" if modules else ""}
        [APP]
        SECRET_KEY = {SECRET}
        [CELERY]
        broker_url = {broker}
        {f"result_backend = {results}" if results else ""}
        beat_max_loop_interval = {LOOP}
        beat_schedule = {json.dumps(beat_schedule or {})}
    """


@pytest.fixture
def beat_project(make_project: t.Callable[..., Project], redis_url: str, tmp_path: Path
                 ) -> Project:
    return make_project(cfg(redis_url, tmp_path / "state", MINUTELY))


@pytest.fixture
def redis_client(beat_project: Project) -> t.Iterator[Redis]:
    """A client of the project's broker; the project's keys are deleted afterwards."""
    import redis

    celery = beat_project.celery
    client = redis.Redis.from_url(celery.conf.broker_url)
    yield client
    client.delete(lock_key(celery), slots_key(celery), pending_key(celery),
                  celery.conf.task_default_queue)
    client.close()


@pytest.fixture
def schedulers() -> t.Iterator[t.Callable[..., HeartbeatScheduler]]:
    """``start(project, state=None)`` → a scheduler as 'flasker beat' makes it (``state``:
    another state folder, as on another host); each closed after the test."""
    started: list[HeartbeatScheduler] = []

    def start(project: Project, state: Path | None = None) -> HeartbeatScheduler:
        filename = Path(project.celery.conf.beat_schedule_filename)
        if state is not None:
            filename = state / filename.name
        filename.parent.mkdir(parents=True, exist_ok=True)
        scheduler = HeartbeatScheduler(app=project.celery, schedule_filename=str(filename))
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        scheduler.close()


def heartbeat_of(project: Project) -> Path:
    return Path(project.celery.conf.beat_schedule_filename).with_name(HEARTBEAT_FILE)


def ping_beat(runner: t.Any, project: Project, *args: str) -> t.Any:
    return runner.invoke(["-c", str(project.config.path), "ping", "beat", *args])


# -- the lock ------------------------------------------------------------------------------------


def test_the_lock_key_and_its_expiry_derive_from_the_project(beat_project: Project) -> None:
    celery = beat_project.celery
    assert lock_key(celery) == f"flasker:beat-lock:{celery.conf.task_default_queue}"
    assert silent_limit(celery) == SILENT
    assert lock_owner() == f"{socket.gethostname()}:{os.getpid()}"


def test_check_lock_passes_while_no_beat_holds_the_lock(beat_project: Project,
                                                        redis_client: Redis) -> None:
    check_lock(beat_project.celery)
    assert redis_client.get(lock_key(beat_project.celery)) is None  # checking takes nothing


def test_a_scheduler_holds_renews_and_releases_the_lock(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler],
) -> None:
    key = lock_key(beat_project.celery)
    scheduler = schedulers(beat_project)
    assert redis_client.get(key) == lock_owner().encode()
    assert 0 < redis_client.ttl(key) <= SILENT
    redis_client.expire(key, 2)
    scheduler.tick()
    assert redis_client.ttl(key) > 2  # renewed on every tick
    check_lock(beat_project.celery)  # its own lock does not stop this process
    scheduler.close()
    assert redis_client.get(key) is None


def test_a_second_beat_is_refused_while_another_holds_the_lock(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler],
) -> None:
    """What a beat on another host leaves in Redis: its host and pid, expiring."""
    key = lock_key(beat_project.celery)
    redis_client.set(key, "other-host:4242", ex=SILENT)
    with pytest.raises(BeatLocked) as info:
        check_lock(beat_project.celery)
    assert str(info.value) == (
        f"Another beat of this project is running (other-host:4242 holds '{key}' in Redis):"
        f" run a single beat per project, or periodic tasks are sent twice. If that beat is"
        f" gone, its lock expires within {SILENT} s."
    )
    with pytest.raises(BeatLocked, match="other-host:4242 holds"):
        schedulers(beat_project)
    assert redis_client.get(key) == b"other-host:4242"  # left to its holder
    assert not heartbeat_of(beat_project).exists()


def test_a_lock_left_by_this_same_beat_is_taken_back(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler],
) -> None:
    """A restarted container comes back with the same host name and pid."""
    key = lock_key(beat_project.celery)
    redis_client.set(key, lock_owner(), ex=5)
    check_lock(beat_project.celery)
    schedulers(beat_project)
    assert redis_client.get(key) == lock_owner().encode()
    assert redis_client.ttl(key) > 5


def test_a_beat_that_lost_its_lock_stops_and_leaves_it(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler],
) -> None:
    key = lock_key(beat_project.celery)
    scheduler = schedulers(beat_project)
    redis_client.set(key, "other-host:7", ex=SILENT)  # it expired, and another beat took it
    with pytest.raises(BeatLocked, match=f"^Beat lost '{key}' to other-host:7: stopping.$"):
        scheduler.tick()
    scheduler.close()
    assert redis_client.get(key) == b"other-host:7"


def test_a_running_beat_process_holds_the_lock_until_it_stops(
    beat_project: Project, redis_client: Redis, spawn: t.Callable[..., Process],
    schedulers: t.Callable[[Project], HeartbeatScheduler], runner: t.Any,
) -> None:
    key = lock_key(beat_project.celery)
    beat = spawn(["-c", str(beat_project.config.path), "beat"], cwd=beat_project.root)
    holder = f"{socket.gethostname()}:{beat.popen.pid}"
    wait_for(lambda: redis_client.get(key) == holder.encode(), timeout=30,
             what=f"beat's lock; its log {beat.log}")
    with pytest.raises(BeatLocked, match=f"\\({holder} holds '{key}'"):
        check_lock(beat_project.celery)
    with pytest.raises(BeatLocked):
        schedulers(beat_project)
    wait_for(heartbeat_of(beat_project).exists, timeout=30, what="beat's heartbeat")
    pinged = ping_beat(runner, beat_project)
    assert pinged.exit_code == 0, pinged.output
    assert beat.stop() == 0, beat.output()
    assert redis_client.get(key) is None
    check_lock(beat_project.celery)


def test_with_the_embedded_broker_no_lock_is_needed(
    make_project: t.Callable[..., Project], tmp_path: Path,
    schedulers: t.Callable[[Project], HeartbeatScheduler], runner: t.Any,
) -> None:
    """No Redis to ask: the pid file in the state folder keeps a second beat out instead."""
    state = tmp_path / "state"
    project = make_project(cfg(f"sqla+sqlite:///{state / 'broker.sqlite'}", state))
    check_lock(project.celery)
    scheduler = schedulers(project)
    scheduler.tick()
    assert heartbeat_of(project).is_file()
    assert ping_beat(runner, project).exit_code == 0


# -- the heartbeat -------------------------------------------------------------------------------


def test_the_heartbeat_is_touched_on_every_tick(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler],
) -> None:
    heartbeat = heartbeat_of(beat_project)
    assert heartbeat == beat_project.root / "state" / "beat-heartbeat"
    scheduler = schedulers(beat_project)
    assert not heartbeat.exists()  # written by a tick, not at start-up
    scheduler.tick()
    assert heartbeat.is_file()
    old = time.time() - 100
    os.utime(heartbeat, (old, old))
    scheduler.tick()
    assert time.time() - heartbeat.stat().st_mtime < 5


def test_ping_beat_reads_the_heartbeat_the_scheduler_writes(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[[Project], HeartbeatScheduler], runner: t.Any,
) -> None:
    heartbeat = heartbeat_of(beat_project)
    missing = ping_beat(runner, beat_project)
    assert missing.exit_code == 1
    assert f"No heartbeat file '{heartbeat}': beat has not ticked yet" in missing.output

    schedulers(beat_project).tick()
    fresh = ping_beat(runner, beat_project)
    assert fresh.exit_code == 0, fresh.output
    assert fresh.output.startswith("beat ticked ")

    old = time.time() - (SILENT + 5)
    os.utime(heartbeat, (old, old))
    stale = ping_beat(runner, beat_project)
    assert stale.exit_code == 1
    assert f"is {SILENT + 5} s old (limit {SILENT} s): beat is stuck or stopped" in stale.output
    assert ping_beat(runner, beat_project, "--max-age", str(SILENT * 2)).exit_code == 0


# -- slots ---------------------------------------------------------------------------------------


def test_slots_are_whole_milliseconds_in_utc() -> None:
    moment = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert from_ms(to_ms(moment)) == moment
    assert slot_text(moment) == "2025-03-01T12:00:00.123+00:00"


def test_an_interval_keeps_to_its_grid_and_catches_up_one_slot(beat_project: Project) -> None:
    every = schedule(timedelta(seconds=60), app=beat_project.celery)
    last = T0 + timedelta(milliseconds=123)
    assert next_fire(every, last) == last + timedelta(seconds=60)
    assert latest_fire(every, last, last + timedelta(seconds=59.999)) is None
    assert latest_fire(every, last, last + timedelta(seconds=60)) == last + timedelta(seconds=60)
    assert latest_fire(every, last, last + timedelta(seconds=150)) == last + timedelta(seconds=120)
    # Stopped for a day: the latest slot only, still on the grid of the first.
    assert latest_fire(every, last, last + timedelta(days=1, seconds=30)) == (
        last + timedelta(days=1))


def test_a_crontab_catches_up_its_latest_time_only(beat_project: Project) -> None:
    nightly = crontab("0", "4", app=beat_project.celery)
    four = T0.replace(hour=4)
    assert next_fire(nightly, four) == four + timedelta(days=1)
    assert latest_fire(nightly, four, T0) is None
    assert latest_fire(nightly, four - timedelta(days=400), T0) == four
    yearly = crontab(minute="0", hour="4", day_of_month="1", month_of_year="1",
                     app=beat_project.celery)
    assert latest_fire(yearly, datetime(2020, 1, 1, 5, tzinfo=UTC), T0) == (
        datetime(2025, 1, 1, 4, tzinfo=UTC))


def make_due(redis_client: Redis, project: Project, entry: str = "minutely") -> datetime:
    """Record the entry's last slot 61 s back, as a beat would have: one slot is due now."""
    last = from_ms(to_ms(datetime.now(UTC) - timedelta(seconds=61)))
    redis_client.hset(slots_key(project.celery), entry, to_ms(last))
    return last + timedelta(seconds=60)


def queued(redis_client: Redis, project: Project) -> list[dict[str, t.Any]]:
    """The task messages waiting in the project's queue (no worker runs here)."""
    queue = project.celery.conf.task_default_queue
    return [json.loads(m) for m in redis_client.lrange(queue, 0, -1)]


def test_a_slot_is_recorded_with_its_task_and_a_restarted_beat_does_not_send_it_again(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler], tmp_path: Path,
) -> None:
    slot = make_due(redis_client, beat_project)
    first = schedulers(beat_project)
    first.tick()
    [message] = queued(redis_client, beat_project)
    assert message["headers"][SLOT_HEADER] == slot_text(slot)
    assert message["headers"]["celery_beat_task"] is True
    assert redis_client.hget(slots_key(beat_project.celery), "minutely") == str(
        to_ms(slot)).encode()
    assert redis_client.hgetall(pending_key(beat_project.celery)) == {}  # known sent

    # The first beat vanishes without a word (SIGKILL); another comes up, even with a
    # schedule file of its own (another host, or a lost volume): Redis says where to go on.
    again = schedulers(beat_project, state=tmp_path / "other-host")
    assert again.schedule["minutely"].last_run_at == slot
    again.tick()
    assert len(queued(redis_client, beat_project)) == 1
    due, recheck = again.is_due(again.schedule["minutely"])
    assert not due and 55 < recheck <= 60


def test_two_beats_whose_lock_failed_send_each_slot_once(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot = make_due(redis_client, beat_project)
    first = schedulers(beat_project)
    redis_client.delete(lock_key(beat_project.celery))  # say it expired under a stalled beat
    second = schedulers(beat_project, state=tmp_path / "other-host")
    second.tick()
    with caplog.at_level(logging.WARNING, logger="flasker.beat"):
        first.tick()
    assert len(queued(redis_client, beat_project)) == 1
    assert f"slot {slot_text(slot)} of 'minutely' was already sent" in caplog.text
    assert first.schedule["minutely"].last_run_at == slot  # and it goes on from there


def test_a_send_that_fails_gives_its_slot_back_and_stays_due(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler], caplog: pytest.LogCaptureFixture,
) -> None:
    """Any failure to send (here an argument JSON cannot carry) leaves the slot to a retry."""
    beat_project.celery.conf.beat_schedule = {
        "broken": {"task": "beat.tests.tick", "schedule": 60, "args": (object(),)}}
    before = make_due(redis_client, beat_project, "broken") - timedelta(seconds=60)
    scheduler = schedulers(beat_project)
    with caplog.at_level(logging.ERROR, logger="flasker.beat"):
        scheduler.tick()
    assert "could not send 'broken' for slot" in caplog.text
    assert queued(redis_client, beat_project) == []
    assert redis_client.hget(slots_key(beat_project.celery), "broken") == str(
        to_ms(before)).encode()
    assert redis_client.hgetall(pending_key(beat_project.celery)) == {}
    entry = scheduler.schedule["broken"]
    assert entry.last_run_at == before
    due, recheck = scheduler.is_due(entry)
    assert due and recheck <= 5


class Killed(BaseException):
    """What SIGKILL leaves behind: nothing after the point where it is raised runs."""


def die(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
    raise Killed


def test_a_slot_recorded_and_never_sent_is_sent_again_when_beat_restarts(
    beat_project: Project, redis_client: Redis, monkeypatch: pytest.MonkeyPatch,
    schedulers: t.Callable[..., HeartbeatScheduler], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot = make_due(redis_client, beat_project)
    first = schedulers(beat_project)
    monkeypatch.setattr(first, "apply_async", die)  # killed between recording and sending
    with pytest.raises(Killed):
        first.tick()
    assert queued(redis_client, beat_project) == []
    recorded, _, lost_id = redis_client.hget(pending_key(beat_project.celery),
                                             "minutely").decode().partition(" ")
    assert recorded == str(to_ms(slot))

    with caplog.at_level(logging.WARNING, logger="flasker.beat"):
        again = schedulers(beat_project, state=tmp_path / "other-host")
    assert (f"Beat stopped after recording slot {slot_text(slot)} of 'minutely' and before it"
            f" knew task {lost_id} sent: sending the slot again as a new task; workers run"
            " only one of the two.") in caplog.text
    again.tick()
    [message] = queued(redis_client, beat_project)
    headers = message["headers"]
    assert headers[SLOT_HEADER] == slot_text(slot)
    assert headers[ENTRY_HEADER] == "minutely"
    assert headers[NEXT_HEADER] == slot_text(slot + timedelta(seconds=60))
    assert headers["id"] != lost_id  # a new task: workers tell it from a redelivery
    assert redis_client.hgetall(pending_key(beat_project.celery)) == {}  # known sent
    due, recheck = again.is_due(again.schedule["minutely"])
    assert not due and 55 < recheck <= 60
    again.tick()
    assert len(queued(redis_client, beat_project)) == 1  # once


def test_a_pending_slot_is_not_sent_again_once_a_later_one_fell_due(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler], caplog: pytest.LogCaptureFixture,
) -> None:
    """Back after more than an interval: the latest slot goes, as after any stop."""
    lost = make_due(redis_client, beat_project) - timedelta(seconds=60)
    redis_client.hset(pending_key(beat_project.celery), "minutely", f"{to_ms(lost)} lost-id")
    scheduler = schedulers(beat_project)
    with caplog.at_level(logging.WARNING, logger="flasker.beat"):
        scheduler.tick()
    [message] = queued(redis_client, beat_project)
    assert message["headers"][SLOT_HEADER] == slot_text(lost + timedelta(seconds=60))
    assert (f"slot {slot_text(lost)} of 'minutely' is not sent again: slot"
            f" {slot_text(lost + timedelta(seconds=60))} has fallen due since") in caplog.text
    assert redis_client.hgetall(pending_key(beat_project.celery)) == {}


def test_a_pending_mark_of_an_entry_no_longer_scheduled_is_dropped(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler],
) -> None:
    celery = beat_project.celery
    redis_client.hset(slots_key(celery), "removed", to_ms(T0))
    redis_client.hset(pending_key(celery), "removed", f"{to_ms(T0)} task-id-1")
    schedulers(beat_project).tick()
    assert redis_client.hgetall(pending_key(celery)) == {}
    assert queued(redis_client, beat_project) == []


def test_a_worker_remembers_a_slot_for_two_intervals_and_a_day_or_1000_intervals(
    beat_project: Project,
) -> None:
    slot = T0

    def after(seconds: float) -> str:
        return slot_text(slot + timedelta(seconds=seconds))

    assert remember_seconds(slot_text(slot), after(86400)) == 3 * 86400  # a daily crontab
    assert remember_seconds(slot_text(slot), after(60)) == 120 + 60000
    assert remember_seconds(slot_text(slot), after(1)) == 2 + 1000  # ~1,000 keys an entry
    assert remember_seconds(slot_text(slot), after(0.2)) == 2 + 1000  # at least a second
    assert remember_seconds(slot_text(slot), None) == 86400  # a header set by hand
    assert remember_seconds("not a time", after(60)) == 86400
    queue = beat_project.celery.conf.task_default_queue
    assert ran_key(beat_project.celery, "nightly", slot_text(slot)) == (
        f"flasker:beat-ran:{queue}:nightly:2025-03-01T12:00:00.000+00:00")


RUNS = """
import redis

from flasker import current_project

celery = current_project.celery


@celery.task(bind=True)
def run(self, retry_once=False):
    # Note the run in a Redis list (task id, slot, retries); retry the first run if told.
    client = redis.Redis.from_url(celery.conf.broker_url)
    slot = self.request.get("flasker_beat_slot")
    client.rpush("runs:" + celery.conf.task_default_queue,
                 f"{self.request.id} {slot} {self.request.retries}")
    client.close()
    if retry_once and not self.request.retries:
        raise self.retry(countdown=0)
    return "ran"
"""


@pytest.fixture
def runs_project(make_project: t.Callable[..., Project], redis_url: str, tmp_path: Path
                 ) -> t.Iterator[Project]:
    """A project whose 'minutely' entry runs a real task; its keys deleted afterwards."""
    import redis

    package = unique_package()
    entry = {"minutely": {"task": f"{package}.tasks.run", "schedule": 60}}
    project = make_project(
        cfg(redis_url, tmp_path / "state", entry, modules=f"{package}.tasks", results=redis_url),
        files={f"{package}/__init__.py": "", f"{package}/tasks.py": RUNS})
    yield project
    celery = project.celery
    queue = celery.conf.task_default_queue
    client = redis.Redis.from_url(celery.conf.broker_url)
    client.delete(lock_key(celery), slots_key(celery), pending_key(celery), queue,
                  f"runs:{queue}", *client.keys(f"flasker:beat-ran:{queue}:*"))
    client.close()


@pytest.fixture
def runs_worker(runs_project: Project, spawn: t.Callable[..., Process]) -> Process:
    """A real worker consuming the project's queue."""
    assert runs_project.config.path is not None
    worker = spawn(["-c", str(runs_project.config.path), "worker", "--concurrency", "2"],
                   cwd=runs_project.root)
    wait_for(lambda: runs_project.celery.control.ping(timeout=0.5), timeout=60,
             what=f"the worker to answer a ping; its log {worker.log}")
    return worker


def runs(client: Redis, project: Project) -> list[tuple[str, str, int]]:
    """(task id, slot, retries) of every run of the project's task, in order."""
    listed = client.lrange(f"runs:{project.celery.conf.task_default_queue}", 0, -1)
    return [(i, s, int(r)) for i, s, r in (v.decode().split(" ") for v in listed)]


def test_a_slot_sent_twice_runs_once_and_a_retry_of_its_task_runs_again(
    runs_project: Project, runs_worker: Process, monkeypatch: pytest.MonkeyPatch,
    schedulers: t.Callable[..., HeartbeatScheduler], caplog: pytest.LogCaptureFixture,
) -> None:
    import redis
    from celery.exceptions import TaskRevokedError

    celery = runs_project.celery
    queue = celery.conf.task_default_queue
    client: Redis = redis.Redis.from_url(celery.conf.broker_url)
    task = celery.tasks[celery.conf.beat_schedule["minutely"]["task"]]

    # Killed after the send and before marking it sent: the slot goes out again, under
    # another id. The worker runs the first of the two; the other's result says so.
    slot = make_due(client, runs_project)
    first = schedulers(runs_project)
    monkeypatch.setattr(first, "_confirm", die)
    with pytest.raises(Killed):
        first.tick()
    sent_first = client.hget(pending_key(celery), "minutely").decode().split(" ")[1]
    with caplog.at_level(logging.INFO, logger="flasker.beat"):
        schedulers(runs_project).tick()
    [sent_again] = re.findall(r"for slot \S+, id (\S+) \(again: task " + sent_first,
                              caplog.text)
    assert client.hgetall(pending_key(celery)) == {}
    results = [celery.AsyncResult(i) for i in (sent_first, sent_again)]
    wait_for(lambda: all(r.ready() for r in results), timeout=30, what="both tasks")
    [(winner, ran_slot, _)] = runs(client, runs_project)
    assert ran_slot == slot_text(slot)
    [skipped] = [r for r in results if r.id != winner]
    assert celery.AsyncResult(winner).state == "SUCCESS"
    assert skipped.state == "REVOKED"
    with pytest.raises(TaskRevokedError, match=(
            f"^Skipped: slot {re.escape(slot_text(slot))} of 'minutely' ran as task"
            f" {winner}.$")):
        skipped.get(timeout=5)
    assert (f"Task {task.name}[{skipped.id}] skipped: slot {slot_text(slot)} of 'minutely'"
            f" ran as task {winner} already (beat sent the slot twice).") in runs_worker.output()
    key = f"flasker:beat-ran:{queue}:minutely:{slot_text(slot)}"
    assert client.get(key) == winner.encode()
    assert 120 + 60000 - 60 < client.ttl(key) <= 120 + 60000

    # A retry (as a redelivery after a worker died) is the same task: it runs again.
    by_hand = slot_text(T0)
    retried = task.apply_async(kwargs={"retry_once": True}, headers={
        SLOT_HEADER: by_hand, ENTRY_HEADER: "by-hand", NEXT_HEADER: slot_text(T0 + timedelta(
            seconds=10))})
    assert retried.get(timeout=30) == "ran"
    assert [r for r in runs(client, runs_project) if r[0] == retried.id] == [
        (retried.id, by_hand, 0), (retried.id, by_hand, 1)]
    assert client.get(f"flasker:beat-ran:{queue}:by-hand:{by_hand}") == retried.id.encode()

    # A task without a slot runs as ever, and leaves nothing in Redis.
    plain = task.delay()
    assert plain.get(timeout=30) == "ran"
    assert (plain.id, "None", 0) in runs(client, runs_project)
    assert sorted(k.decode() for k in client.keys(f"flasker:beat-ran:{queue}:*")) == sorted(
        [key, f"flasker:beat-ran:{queue}:by-hand:{by_hand}"])
    client.close()


def test_beat_waits_out_a_redis_outage_without_stopping(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler], caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis goes away under a running beat: it keeps ticking (and its heartbeat fresh)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    scheduler = schedulers(beat_project)
    reachable = scheduler._client
    scheduler._client = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    try:
        with caplog.at_level(logging.WARNING, logger="flasker.beat"):
            assert scheduler.tick() == 5
            assert scheduler.tick() == 5
    finally:
        scheduler._client = reachable
    assert caplog.text.count("Beat cannot reach Redis") == 1
    assert heartbeat_of(beat_project).is_file()
    with caplog.at_level(logging.WARNING, logger="flasker.beat"):
        scheduler.tick()
    assert "Beat reaches Redis again after" in caplog.text


def test_beat_refuses_to_start_without_its_redis_with_a_sentence(
    make_project: t.Callable[..., Project], tmp_path: Path, runner: t.Any,
) -> None:
    port = free_port()
    project = make_project(cfg(f"redis://127.0.0.1:{port}/0", tmp_path / "state"))
    with pytest.raises(BrokerUnreachable, match="^Beat cannot reach the broker's Redis"):
        check_lock(project.celery)
    result = runner.invoke(["-c", str(project.config.path), "beat"])
    assert result.exit_code == 1
    assert "Error: Beat cannot reach the broker's Redis to take its lock" in result.output
    assert "check 'CELERY.broker_url'" in result.output
    assert "Traceback" not in result.output


RUN_THEN_VANISH = """
import os, sys, time
from flasker import Project
from flasker.beat import HeartbeatScheduler

project = Project(sys.argv[1])
scheduler = HeartbeatScheduler(app=project.celery,
                               schedule_filename=project.celery.conf.beat_schedule_filename)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    time.sleep(min(scheduler.tick(), 0.1))
os._exit(0)  # as SIGKILL would: no close, no sync
"""


def test_with_the_embedded_broker_the_schedule_file_records_each_slot_before_its_send(
    make_project: t.Callable[..., Project], tmp_path: Path,
    schedulers: t.Callable[..., HeartbeatScheduler],
) -> None:
    """No Redis: the schedule file is synced before every send (Celery's every 3 min)."""
    state = tmp_path / "state"
    every_second = {"every-second": {"task": "beat.tests.tick", "schedule": 1}}
    project = make_project(cfg(f"sqla+sqlite:///{state / 'broker.sqlite'}", state,
                               every_second))
    vanished = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN_THEN_VANISH),
                               str(project.config.path), "3.5"], capture_output=True,
                              text=True, timeout=60, check=False)
    assert vanished.returncode == 0, vanished.stderr
    with sqlite3.connect(state / "broker.sqlite") as broker:
        payloads = broker.execute("SELECT payload FROM kombu_message").fetchall()
    sent = sorted(json.loads(p)["headers"][SLOT_HEADER] for (p,) in payloads)
    assert len(sent) >= 3 and len(set(sent)) == len(sent)

    again = schedulers(project)  # kombu's models warn in this process: nothing is sent here
    assert slot_text(again.schedule["every-second"].last_run_at) == sent[-1]


RUN_KILLED = """
import logging, os, signal, sys, time
from flasker import Project
from flasker.beat import HeartbeatScheduler

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

logging.basicConfig(level=logging.INFO)
project = Project(sys.argv[1])
if sys.argv[2] == "before-send":
    HeartbeatScheduler.apply_async = die
elif sys.argv[2] == "before-marking-sent":
    HeartbeatScheduler._confirm = die
scheduler = HeartbeatScheduler(app=project.celery,
                               schedule_filename=project.celery.conf.beat_schedule_filename)
end = time.monotonic() + 1.0
while time.monotonic() < end:
    time.sleep(min(scheduler.tick(), 0.1))
scheduler.close()
"""


def test_with_the_embedded_broker_a_killed_beat_sends_again_what_the_broker_lacks(
    make_project: t.Callable[..., Project], tmp_path: Path,
) -> None:
    """The pending mark is in the schedule file; the broker's table says whether the task
    got there (kombu's SQL transport keeps delivered messages): sent once, in both cases."""
    state = tmp_path / "state"
    project = make_project(cfg(f"sqla+sqlite:///{state / 'broker.sqlite'}", state, MINUTELY))
    state.mkdir()

    def due_now() -> datetime:
        """Record a last slot 61 s back in the schedule file: one slot is due now."""
        scheduler = HeartbeatScheduler(app=project.celery,
                                       schedule_filename=project.celery.conf.beat_schedule_filename)
        last = from_ms(to_ms(datetime.now(UTC) - timedelta(seconds=61)))
        scheduler._set_last(scheduler.schedule["minutely"], last)
        scheduler.close()
        return last + timedelta(seconds=60)

    def beat(kill: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(RUN_KILLED),
                               str(project.config.path), kill], capture_output=True,
                              text=True, timeout=60, check=False)

    def sent() -> list[str]:
        if not (state / "broker.sqlite").exists():
            return []
        with sqlite3.connect(state / "broker.sqlite") as broker:
            payloads = broker.execute("SELECT payload FROM kombu_message").fetchall()
        return [json.loads(p)["headers"][SLOT_HEADER] for (p,) in payloads]

    slot = due_now()
    assert beat("before-send").returncode == -signal.SIGKILL
    assert sent() == []
    restarted = beat()
    assert restarted.returncode == 0, restarted.stderr
    assert sent() == [slot_text(slot)]
    assert "the broker does not have it; sending the slot again" in restarted.stderr

    slot = due_now()
    assert beat("before-marking-sent").returncode == -signal.SIGKILL
    assert sent()[1:] == [slot_text(slot)]
    restarted = beat()
    assert restarted.returncode == 0, restarted.stderr
    assert sent()[1:] == [slot_text(slot)]  # not again
    assert "the broker has it; nothing to send again" in restarted.stderr


def test_a_crontab_slot_older_than_the_starting_deadline_is_not_caught_up(
    beat_project: Project, redis_client: Redis,
    schedulers: t.Callable[..., HeartbeatScheduler],
) -> None:
    """Celery's ``beat_cron_starting_deadline`` holds: a slot older than it is let go."""
    conf = beat_project.celery.conf
    conf.beat_cron_starting_deadline = 3600
    conf.beat_schedule = {"yearly": {"task": "beat.tests.tick", "schedule": crontab(
        minute="0", hour="4", day_of_month="1", month_of_year="1")}}
    redis_client.hset(slots_key(beat_project.celery), "yearly",
                      to_ms(datetime.now(UTC) - timedelta(days=800)))
    scheduler = schedulers(beat_project)
    due, recheck = scheduler.is_due(scheduler.schedule["yearly"])
    assert not due and recheck > 3600  # next 1 January, 04:00
    conf.beat_cron_starting_deadline = None
    assert scheduler.is_due(scheduler.schedule["yearly"])[0]  # without it: the latest, once
