"""The lease on the embedded broker (``flasker.lease.SQLTransport``): nothing lost to a crash.

kombu's SQLAlchemy transport takes a message by making its row invisible and never looks
at it again: a worker killed with SIGKILL lost the messages it held. flasker's transport
records each take in ``flasker_leases``, in the take's own transaction, and every worker
renews a heartbeat and returns the messages of holders that stopped. The fast tests drive
the transport through kombu in this process; the slow ones run real ``flasker worker``
processes on a project's embedded broker (no Redis), with tasks that write one row keyed by
the task's id (``ON CONFLICT DO NOTHING``) and a second table of every start.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
import typing as t
from pathlib import Path

import pytest
from kombu.connection import Connection

from flasker import ConfigError, Project
from flasker.lease import LeasedConnection, SQLChannel, SQLTransport

from .conftest import Process, wait_for
from .lease_cases import Tasks, settings_of, write_tasks_project

# kombu's SQL transport asks for messages once a second when it found none or had no room
# for one: a worker of two processes then runs two tasks a second, however short. Ten
# times a second here.
FAST = '{"polling_interval": 0.1}'
# A short lease for the tests that watch a long task: heartbeats and sweeps every second.
SHORT = '{"visibility_timeout": 3, "polling_interval": 0.1}'

faults = pytest.mark.faults  # the tests that run workers for tens of seconds

# kombu's message model declares its relationship with lazy='noload', which SQLAlchemy 2.1
# deprecates: warned once per process, when this process first maps kombu's models.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning")


# -- settings ----------------------------------------------------------------------------------


def test_the_embedded_broker_gets_a_30_s_lease(tmp_path: Path) -> None:
    settings = settings_of(tmp_path)
    assert settings["broker_url"].startswith("sqla+sqlite:///")
    assert settings["broker_transport_options"] == {"visibility_timeout": 30}
    mine = settings_of(tmp_path / "mine", 'broker_transport_options = {"visibility_timeout": 5,'
                                        ' "connect_args": {"timeout": 20}}')
    assert mine["broker_transport_options"] == {"visibility_timeout": 5,
                                                "connect_args": {"timeout": 20}}


@pytest.mark.parametrize("value", ["0", "-3", '"soon"', "true", "null"])
def test_a_bad_lease_timeout_is_refused_with_a_sentence(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=(
            r"Config 'CELERY.broker_transport_options' has visibility_timeout .*: expected a"
            r" positive number of seconds, such as 30")):
        settings_of(tmp_path, f'broker_transport_options = {{"visibility_timeout": {value}}}')


def test_every_connection_of_the_app_uses_the_leasing_transport(
        make_project: t.Callable[..., Project]) -> None:
    """Web and worker alike; the transport's own options never reach create_engine, not even
    through kombu's pools, whose connections use kombu's own transport to send."""
    project = make_project("[PROJECT]\nNAME = lease\n[CELERY]\nbroker_transport_options ="
                           ' {"visibility_timeout": 5, "polling_interval": 0.5}\n')
    celery = project.celery
    for connection in (celery.connection_for_read(), celery.connection_for_write()):
        with connection:
            assert isinstance(connection.transport, SQLTransport)
            assert connection.transport.polling_interval == 0.5
            assert connection.as_uri().startswith("sqla+sqlite:///")
            channel = connection.default_channel
            assert isinstance(channel, SQLChannel)
            assert channel.lease_timeout == 5
            assert channel.session.bind is not None  # create_engine took the rest
            assert connection.clone().default_channel.lease_timeout == 5
    with celery.producer_or_acquire() as producer:
        assert producer.channel.session.bind is not None
    assert celery.send_task("nothing.here").id


# -- the lease, through kombu ------------------------------------------------------------------


class Broker:
    """A SQLite broker file and the rows flasker and kombu keep in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqla+sqlite:///{path}"

    def connect(self, timeout: float = 3) -> Connection:
        return LeasedConnection(self.url, transport_options={"visibility_timeout": timeout})

    def rows(self, sql: str) -> list[tuple[t.Any, ...]]:
        with sqlite3.connect(self.path) as db:
            return db.execute(sql).fetchall()

    def leases(self) -> dict[int, str]:
        return dict(self.rows("SELECT message_id, holder FROM flasker_leases"))

    def holders(self) -> list[str]:
        return [row[0] for row in self.rows("SELECT holder FROM flasker_lease_holders")]

    def messages(self) -> list[tuple[int, int, str | None]]:
        """``(id, visible, timestamp)`` of every row of kombu's table."""
        return self.rows("SELECT id, visible, timestamp FROM kombu_message ORDER BY id")

    def age(self, holder: str, seconds: float) -> None:
        """Make ``holder``'s last heartbeat ``seconds`` older: as if it had stopped then."""
        with sqlite3.connect(self.path) as db:
            db.execute("UPDATE flasker_lease_holders SET heartbeat = heartbeat - ?"
                       " WHERE holder = ?", (seconds, holder))


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    return Broker(tmp_path / "broker.sqlite")


def _channel(connection: Connection) -> SQLChannel:
    return t.cast(SQLChannel, connection.default_channel)


def test_a_message_is_held_under_a_lease_until_acknowledged(broker: Broker) -> None:
    with broker.connect() as connection:
        queue = connection.SimpleQueue("work")
        queue.put({"n": 1})
        queue.put({"n": 2})
        first = queue.get(timeout=5)
        holder = _channel(connection).holder
        assert broker.leases() == {1: holder}
        assert broker.holders() == [holder]
        first.ack()
        assert broker.leases() == {}
        # kombu's row: invisible for good, with only 'visible' and kombu's take time changed.
        assert broker.messages()[0][:2] == (1, 0)

        second = queue.get(timeout=5)
        second.reject(requeue=True)  # kombu puts a copy back; the lease goes with it
        assert broker.leases() == {}
        assert [(m, v) for m, v, _ in broker.messages()] == [(1, 0), (2, 0), (3, 1)]
        again = queue.get(timeout=5)
        assert again.payload == {"n": 2}
        assert broker.leases() == {3: holder}
        again.reject()  # dropped: no lease left behind either
        assert broker.leases() == {}
        queue.close()

        unacked = connection.SimpleQueue("events", no_ack=True)  # as Celery's remote control
        unacked.put({"n": 4})
        assert unacked.get(timeout=5).payload == {"n": 4}
        assert broker.leases() == {}  # nothing will acknowledge it: no lease to keep
        unacked.close()
    assert broker.holders() == []  # a closed channel leaves


def test_a_dead_holders_messages_return_once_and_a_closed_ones_at_once(broker: Broker) -> None:
    """A holder silent for a timeout is swept by another; a closing one hands back its own."""
    with broker.connect() as doomed:
        queue = doomed.SimpleQueue("work")
        for n in range(3):
            queue.put({"n": n})
        held = queue.get(timeout=5)
        dead = _channel(doomed)
        assert dead.heartbeat is not None
        dead.heartbeat.stop()  # the process "dies": no heartbeat any more
        broker.age(dead.holder, 10)

        with broker.connect() as survivor:
            other = survivor.SimpleQueue("work")
            got = []
            for _ in range(3):  # its first take sweeps: the held message is back
                message = other.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
            assert sorted(got) == [0, 1, 2]
            assert broker.leases() == {}
            assert dead.holder not in broker.holders()

            other.put({"n": 3})
            kept = other.get(timeout=5)  # held when the survivor closes
            assert len(broker.leases()) == 1
            other.close()
        # Closed: kombu put a copy back in the queue, in the transaction that dropped the lease.
        assert broker.leases() == {}
        assert broker.holders() == []
        assert [v for _, v, _ in broker.messages()].count(1) == 1
        assert kept.payload == {"n": 3} and held.payload == {"n": 0}
        queue.close()


def test_a_live_holder_taken_for_dead_takes_back_what_is_still_queued(
        broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    """Its heartbeat stalled past the timeout (a stuck database): a warning, no loss."""
    with broker.connect() as stalled, broker.connect() as sweeper:
        queue = stalled.SimpleQueue("work")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        channel = _channel(stalled)
        assert channel.heartbeat is not None
        channel.heartbeat.stop()
        broker.age(channel.holder, 10)
        other = sweeper.SimpleQueue("other")
        other.put({"n": 2})
        other.get(timeout=5).ack()  # its first take sweeps
        assert broker.leases() == {}
        assert broker.messages()[0][1] == 1  # back in the queue

        channel.heartbeat.tick()  # the stalled one wakes up
        assert broker.leases() == {1: channel.holder}
        assert broker.messages()[0][1] == 0
        assert "1 of the 1 it holds were taken back" in caplog.text
        message.ack()
        assert broker.leases() == {}
        other.close()
        queue.close()


def test_a_lease_holds_as_long_as_its_heartbeat(broker: Broker) -> None:
    """Ten heartbeats of a 0.6 s lease: another holder sweeping all along returns nothing."""
    with broker.connect(timeout=0.6) as busy, broker.connect(timeout=0.6) as idle:
        queue = busy.SimpleQueue("work")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        other = idle.SimpleQueue("work")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with pytest.raises(other.Empty):
                other.get(timeout=0.5)
        assert broker.leases() == {1: _channel(busy).holder}
        message.ack()
        other.close()
        queue.close()


# -- real workers ------------------------------------------------------------------------------


class EmbeddedTasks(Tasks):
    """The tasks of a project on the embedded broker, and that broker's rows."""

    def __init__(self, project: Project, spawn: t.Callable[..., Process]) -> None:
        super().__init__(project, spawn)
        self.broker = Broker(Path(project.celery.conf.broker_url.removeprefix("sqla+sqlite:///")))


@pytest.fixture
def make_tasks(tmp_path: Path, spawn: t.Callable[..., Process],
               monkeypatch: pytest.MonkeyPatch) -> t.Iterator[t.Callable[..., EmbeddedTasks]]:
    """``make_tasks(transport_options=None)``: a project in ``tmp_path``, all in SQLite."""
    made: list[EmbeddedTasks] = []

    def make(transport_options: str | None = None) -> EmbeddedTasks:
        options = f"BROKER_TRANSPORT_OPTIONS = {transport_options}" if transport_options else ""
        made.append(EmbeddedTasks(write_tasks_project(tmp_path, monkeypatch, options), spawn))
        return made[-1]

    yield make
    for tasks in made:
        tasks.stop_workers()
        tasks.project.close()


@faults
def test_a_worker_killed_mid_run_loses_none_of_200_tasks(
        make_tasks: t.Callable[..., EmbeddedTasks]) -> None:
    """SIGKILL to a worker and its task processes in the middle of 200 tasks, then a restart.

    flasker's default lease (30 s): the messages the killed worker held return once its
    heartbeat is 30 s old, and run on the other worker or the restarted one.
    """
    tasks = make_tasks(FAST)
    doomed = tasks.worker("doomed")
    survivor = tasks.worker("survivor")
    sent = {tasks.chore.delay(0.2).id for _ in range(200)}
    wait_for(lambda: tasks.count("receipts") >= 40 and len(tasks.broker.leases()) >= 3,
             timeout=60, interval=0.05, what="the workers to run 40 tasks and hold more")
    os.killpg(doomed.popen.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    doomed.popen.wait()
    done_at_kill = tasks.count("receipts")
    assert done_at_kill < 200, "the run ended before the kill: make the tasks longer"
    holder = re.search(r"under a lease as '([^']+)'", doomed.output())
    assert holder, doomed.output()
    # What it held when it died (nearly always its two).
    held = [m for m, h in tasks.broker.leases().items() if h == holder[1]]
    restarted = tasks.worker("doomed")  # as Docker's restart policy does

    wait_for(lambda: tasks.count("receipts") == 200,
             timeout=max(90 - (time.monotonic() - killed_at), 1), interval=0.5,
             what=f"all 200 tasks within 90 s of the crash; log: {restarted.log}")
    recovered = time.monotonic() - killed_at
    assert tasks.ids("receipts") == sent
    if held:
        assert (f"Returned {len(held)} task message(s) to the queue: their worker stopped"
                in restarted.output() + survivor.output())
    # Only what the killed worker held (prefetch: one per process) ran twice.
    again = tasks.count("starts") - 200
    assert 0 <= again <= len(held), again
    assert tasks.broker.leases() == {}
    print(f"\n200 tasks, a worker SIGKILLed after {done_at_kill} were done, holding"
          f" {len(held)}: all done {recovered:.1f} s after the crash; {again} ran twice.")


@faults
def test_a_long_task_on_a_live_worker_runs_once_through_a_warm_shutdown(
        make_tasks: t.Callable[..., EmbeddedTasks]) -> None:
    """A task of over three lease timeouts, a second worker sweeping every second, and the
    first worker told to stop (SIGTERM: Celery's warm shutdown waits, its loop stopped)."""
    tasks = make_tasks(SHORT)
    busy = tasks.worker("busy", concurrency=1, FLASKER__PROJECT__LOG_LEVEL="DEBUG")
    outcome = tasks.chore.delay(12)
    wait_for(lambda: tasks.starts(outcome.id), timeout=30, what="the long task to start")
    idle = tasks.worker("idle", concurrency=1)
    time.sleep(4)  # over a timeout of sweeps by the idle worker
    os.kill(busy.popen.pid, signal.SIGTERM)  # the main process only, as 'docker stop' does
    assert busy.popen.wait(timeout=60) == 0
    time.sleep(4)  # over a timeout more: nothing comes back late either
    assert tasks.starts(outcome.id) == [tasks.starts(outcome.id)[0]]
    assert tasks.count("receipts") == 1
    output = busy.output()
    assert "Warm shutdown" in output
    assert "Renewed the lease of 1 held task message(s)." in output
    assert outcome.id not in idle.output()
    assert tasks.broker.leases() == {}
    assert len(tasks.broker.holders()) == 1  # the idle worker's; the busy one left


@faults
def test_a_soft_shutdown_hands_a_running_task_back_once(
        make_tasks: t.Callable[..., EmbeddedTasks]) -> None:
    """The stack's stop (REMAP_SIGTERM, a soft shutdown): the task is cancelled after the
    soft timeout and its message handed back; it runs again elsewhere, and only there."""
    tasks = make_tasks(SHORT)
    stopping = tasks.worker("stopping", concurrency=1, REMAP_SIGTERM="SIGQUIT",
                            FLASKER__CELERY__WORKER_SOFT_SHUTDOWN_TIMEOUT="2")
    outcome = tasks.chore.delay(6)
    first = wait_for(lambda: tasks.starts(outcome.id), timeout=30, what="the task to start")
    taker = tasks.worker("taker", concurrency=1)
    os.kill(stopping.popen.pid, signal.SIGTERM)
    stopping.popen.wait(timeout=60)
    wait_for(lambda: tasks.count("receipts") == 1, timeout=30,
             what=f"the task to run again; logs: {stopping.log}, {taker.log}")
    time.sleep(4)  # over a timeout of sweeps: the handed-back original does not run a third time
    starts = tasks.starts(outcome.id)
    assert len(starts) == 2 and starts[0] == first[0], starts
    assert outcome.id in taker.output()
    assert tasks.broker.leases() == {}
