"""Beat killed (SIGKILL) or stopped (SIGTERM) and restarted: no slot run twice, none skipped.

A real ``flasker beat`` and a real ``flasker worker`` on Redis and PostgreSQL. The
periodic task falls due every three seconds and writes the slot it was sent for (the
``flasker_beat_slot`` header) into ``beat_attempts`` (every run) and ``beat_slots``
(primary key: a second run of one slot would fail there). Beat is killed just after
a send and between sends, with SIGKILL and SIGTERM, and started again: at once, as
a restarted container that takes its own lock back, or as a supervisor on the same
host would, again and again until the killed beat's lock expires. Then it is killed
exactly inside its window: after recording a slot and before sending its task, and
after sending it and before marking it sent (a ``sitecustomize`` module loaded by
that one beat alone SIGKILLs it there); the beat started next sends the slot again,
and the worker runs it once.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import textwrap
import time
import typing as t
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from flasker import Project

from .conftest import SECRET, Process, prepend_path, unique_package, wait_for, write_project

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

# Longer than a restart of beat (1.5 to 3 s here): a restarted beat that forgot its last
# send would send that slot again.
INTERVAL = 3.0
# beat_max_loop_interval: the lock of a killed beat expires three times this later.
LOOP = 1
# Slack for a machine shared with other tests (less than an interval: no slot may go missing).
MARGIN = 1.0
SENT = "Scheduler: Sent due task"
SENT_SLOT = re.compile(r"Scheduler: Sent due task record \(\S+\) for slot (\S+), id (\S+)")

# Loaded (as sitecustomize, through PYTHONPATH) by the one beat the test kills inside its
# window: SIGKILL where $KILL_BEAT says, exactly between two steps of beat's send.
KILL_IN_WINDOW = """
import os
import signal

from flasker.beat import HeartbeatScheduler


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if os.environ["KILL_BEAT"] == "before-send":  # the slot is recorded, pending
    HeartbeatScheduler.apply_async = die
elif os.environ["KILL_BEAT"] == "before-marking-sent":  # the task is in Redis
    HeartbeatScheduler._confirm = die
"""
WINDOWS = {"before-send": "after recording a slot, before sending it",
           "before-marking-sent": "after sending a slot, before marking it sent"}

TASKS = """
from sqlalchemy import Column, Integer, Unicode

from flasker import Model, current_project

celery = current_project.celery
db = current_project.db


class Attempt(Model):
    __tablename__ = "beat_attempts"
    id = Column(Integer, primary_key=True)
    slot = Column(Unicode(40), nullable=False)
    task_id = Column(Unicode(64), nullable=False)


class Slot(Model):
    __tablename__ = "beat_slots"
    slot = Column(Unicode(40), primary_key=True)


@celery.task(bind=True)
def record(self):
    slot = self.request.get("flasker_beat_slot")
    db.add(Attempt(slot=slot, task_id=self.request.id))
    db.commit()
    db.add(Slot(slot=slot))
"""

Redis = t.Any  # redis.Redis, imported in the fixture (an optional dependency of flasker)


@pytest.fixture
def beat_project(tmp_path: Path, clean_pg: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
            ) -> t.Iterator[Project]:
    package = unique_package()
    every = f'{{"record": {{"task": "{package}.tasks.record", "schedule": {INTERVAL}}}}}'
    path = write_project(
        tmp_path,
        f"""
        [PROJECT]
        NAME = Beat faults {package}
        MODULES = {package}.tasks
        DB_URL = {clean_pg}
        STATE_FOLDER = {tmp_path / "state"}
        [APP]
        SECRET_KEY = {SECRET}
        [CELERY]
        broker_url = {redis_url}
        result_backend = {redis_url}
        beat_max_loop_interval = {LOOP}
        beat_schedule = {every}
        """,
        {f"{package}/__init__.py": "", f"{package}/tasks.py": TASKS},
    )
    prepend_path(monkeypatch, tmp_path)
    made = Project(path, overrides={"APP": {"TESTING": True}})
    made.metadata.create_all(made.engine)
    yield made
    made.close()


@pytest.fixture
def redis_client(beat_project: Project) -> t.Iterator[Redis]:
    import redis

    client = redis.Redis.from_url(beat_project.celery.conf.broker_url)
    yield client
    queue = beat_project.celery.conf.task_default_queue
    client.delete(f"flasker:beat-lock:{queue}", f"flasker:beat-slots:{queue}",
                  f"flasker:beat-pending:{queue}", queue,
                  *client.keys(f"flasker:beat-ran:{queue}:*"))
    client.close()


class Beats:
    """Starts ``flasker beat`` as a supervisor would, and kills it."""

    def __init__(self, project: Project, spawn: t.Callable[..., Process], client: Redis) -> None:
        assert project.config.path is not None
        self.args = ["-c", str(project.config.path), "beat"]
        self.root = project.root
        self.spawn = spawn
        self.client = client
        self.key = f"flasker:beat-lock:{project.celery.conf.task_default_queue}"
        self.started: list[Process] = []
        self.refused = 0

    def start(self, timeout: float = 40) -> Process:
        """Start beat until one holds the lock (a killed beat's lock expires in 3 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            beat = self.spawn(self.args, cwd=self.root)
            owner = f"{socket.gethostname()}:{beat.popen.pid}".encode()
            while beat.popen.poll() is None and time.monotonic() < deadline:
                if self.client.get(self.key) == owner:
                    self.started.append(beat)
                    return beat
                time.sleep(0.02)
            if beat.popen.poll() is None:
                break
            assert "Another beat of this project is running" in beat.output(), beat.output()
            self.refused += 1
            time.sleep(0.2)
        raise AssertionError(f"no beat took the lock within {timeout} s; logs: "
                             f"{[str(b.log) for b in self.started]}")

    def restart_as_container(self) -> Process:
        """A container comes back with its host name and pid, and takes its lock back.

        Here the new beat has another pid: the lock is given up for it, as the same
        owner would take it.
        """
        self.client.delete(self.key)
        return self.start()

    def start_killed_in_window(self, where: str, hooks: Path) -> tuple[Process, float]:
        """Start a beat that SIGKILLs itself at its first slot, ``where`` says; wait for it.

        Returns it and the moment it died (just after the slot fell due).
        """
        path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)
        beat = self.spawn(self.args, cwd=self.root, env={"PYTHONPATH": path,
                                                         "KILL_BEAT": where})
        self.started.append(beat)
        assert beat.popen.wait(timeout=INTERVAL + 40) == -signal.SIGKILL, beat.output()
        return beat, time.time()

    def sends(self, beat: Process) -> int:
        return beat.output().count(SENT)

    def next_send(self, beat: Process, timeout: float = 10) -> None:
        """Return just after ``beat`` logs its next send."""
        before = self.sends(beat)
        deadline = time.monotonic() + timeout
        while self.sends(beat) == before:
            assert time.monotonic() < deadline, f"beat sent nothing in {timeout} s: {beat.log}"
            time.sleep(0.005)

    def sent_slots(self) -> set[str]:
        """The slots every beat logged as sent."""
        return {m[0] for beat in self.started for m in SENT_SLOT.findall(beat.output())}


def kill(beat: Process, signum: int) -> float:
    """Send ``signum`` to beat; the moment it was sent."""
    at = time.time()
    os.killpg(beat.popen.pid, signum)
    beat.popen.wait(timeout=30)
    return at


def recorded(project: Project) -> tuple[list[str], list[str]]:
    """The slots of every run (in the order they ran), and the unique slots."""
    with project.engine.connect() as connection:
        attempts = connection.execute(
            sa.text("SELECT slot FROM beat_attempts ORDER BY id")).scalars().all()
        slots = connection.execute(sa.text("SELECT slot FROM beat_slots")).scalars().all()
    return list(attempts), list(slots)


def test_beat_killed_or_stopped_runs_every_slot_once(
    beat_project: Project, redis_client: Redis, spawn: t.Callable[..., Process], tmp_path: Path,
) -> None:
    assert beat_project.config.path is not None
    config = ["-c", str(beat_project.config.path)]
    worker = spawn([*config, "worker", "--concurrency", "2"], cwd=beat_project.root)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(KILL_IN_WINDOW))
    beats = Beats(beat_project, spawn, redis_client)
    beat = beats.start()
    beats.next_send(beat)

    # A second beat (another host: a state folder of its own) is refused while this one runs.
    second = spawn([*config, "beat"], cwd=beat_project.root,
                   env={"FLASKER__PROJECT__STATE_FOLDER": str(tmp_path / "other-host")})
    assert second.popen.wait(timeout=60) == 1
    assert "Another beat of this project is running" in second.output()

    restarts: list[tuple[str, float, float]] = []  # (how, went down at, back at)
    for signum, moment, restart in [
        (signal.SIGKILL, "just after a send", beats.restart_as_container),
        (signal.SIGTERM, "just after a send", beats.start),
        (signal.SIGKILL, "between sends", beats.start),  # until the killed beat's lock expires
        (signal.SIGTERM, "between sends", beats.start),
    ]:
        beats.next_send(beat)
        if moment == "between sends":
            time.sleep(INTERVAL / 2)
        killed = kill(beat, signum)
        beat = restart()
        restarts.append((f"{signum.name} {moment}", killed, time.time()))
        for _ in range(2):
            beats.next_send(beat)

    # Killed inside the window: the next beat finds the slot pending and sends it again,
    # unless the next slot fell due meanwhile (a slow restart), which goes instead.
    windows: list[tuple[str, float, Process]] = []  # (where, time down, the beat after)
    for where in WINDOWS:
        beats.next_send(beat)
        stopped = kill(beat, signal.SIGTERM)
        _, died = beats.start_killed_in_window(where, hooks)
        beat = beats.restart_as_container()
        back = time.time()
        restarts.append((f"SIGTERM, then a beat started {WINDOWS[where]}", stopped, died))
        restarts.append((f"SIGKILL {WINDOWS[where]}", died, back))
        windows.append((where, back - died, beat))
        beats.next_send(beat)
    assert beat.stop() == 0

    sent = beats.sent_slots()
    wait_for(lambda: sent <= set(recorded(beat_project)[1]), timeout=30,
             what=f"the worker to run the {len(sent)} slots beat sent")
    queue = beat_project.celery.conf.task_default_queue
    wait_for(lambda: redis_client.llen(queue) == 0, timeout=30, what="an empty queue")
    time.sleep(1.5)  # a task sent twice would have run by now
    attempts, slots = recorded(beat_project)

    # Nothing doubled: one run per slot, whatever beat sent.
    doubled = sorted({s for s in attempts if attempts.count(s) > 1})
    assert doubled == [], f"slots run twice: {doubled}"
    assert len(attempts) == len(slots)

    # Each slot killed inside the window ran once: sent again by the next beat, or, when
    # it came back after the next slot, superseded by that one.
    killed_slots: set[str] = set()
    outcomes: list[str] = []
    for where, down, after in windows:
        log = after.output()
        [(slot, first_id)] = re.findall(r"Beat stopped after recording slot (\S+) of 'record'"
                                        r" and before it knew task (\S+) sent", log)
        killed_slots.add(slot)
        again = re.search(rf"for slot {re.escape(slot)}, id (\S+) \(again: task {first_id}", log)
        if down < INTERVAL - MARGIN:
            assert again, f"{where}: slot {slot} not sent again ({down:.1f} s down): {log}"
        outcomes.append(f"{where}: back after {down:.1f} s,"
                        f" {'sent again' if again else 'superseded by the next slot'}")
        if again:
            assert attempts.count(slot) == 1, f"{where}: slot {slot} ran {attempts.count(slot)}x"
            if where == "before-marking-sent":  # both tasks reached the worker: one ran
                assert re.search(rf"skipped: slot {re.escape(slot)} of 'record' ran as task"
                                 r" \S+ already", worker.output()), worker.log
        else:
            assert f"slot {slot} of 'record' is not sent again" in log, log
            assert attempts.count(slot) == (where == "before-marking-sent")
    # Nothing lost: every slot sent ran; what ran was sent (logged, or by a killed beat).
    assert sent <= set(slots)
    assert set(slots) - sent <= killed_slots

    # Nothing skipped for longer than one interval, plus the restart's time.
    times = sorted(datetime.fromisoformat(s).timestamp() for s in slots)
    for earlier, later in zip(times, times[1:], strict=False):
        across = [r for r in restarts if earlier <= r[1] < later]
        down = sum(started - killed for _, killed, started in across)
        gap = later - earlier
        assert gap <= INTERVAL + down + MARGIN, (
            f"{gap:.1f} s between slots {earlier:.3f} and {later:.3f}"
            f" (across {[r[0] for r in across]}, down {down:.1f} s)")
        # Slots keep to their grid: a whole number of intervals apart.
        assert abs(gap / INTERVAL - round(gap / INTERVAL)) < 0.001, gap

    # A restart catches up at most the latest slot that fell due while beat was down.
    for how, killed, started in restarts:
        missed = [s for s in times if killed < s < started]
        assert len(missed) <= 1, f"{how}: {len(missed)} slots caught up"

    figures = ", ".join(f"{how} {started - killed:.1f} s" for how, killed, started in restarts)
    print(f"\n{len(slots)} slots, each run once; largest gap"
          f" {max(b - a for a, b in zip(times, times[1:], strict=False)):.1f} s;"
          f" down: {figures}; starts refused while a killed beat's lock lived:"
          f" {beats.refused}; killed in the window: {'; '.join(outcomes)}")
