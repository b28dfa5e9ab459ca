"""The lease on a worker's task messages (``flasker.lease``), with real workers on Redis.

A crashed worker's tasks run again on another worker within seconds, and a task still
running on a live worker is never handed out twice, however long it runs. Each task
writes one row keyed by its id (``ON CONFLICT DO NOTHING``, as the README advises), and
a second table records every start, so that a test sees both "nothing lost" and how
often a task ran.
"""

from __future__ import annotations

import os
import signal
import time
import typing as t
from pathlib import Path

import pytest
import redis
from kombu.connection import Connection

from flasker import ConfigError, Project
from flasker.lease import REDIS_TRANSPORT_OPTIONS, Lease, renewal_interval
from flasker.tasks import celery_settings

from .conftest import Process, wait_for, write_project
from .lease_cases import Tasks, settings_of, write_tasks_project

# A short visibility timeout, swept every second, for the tests that watch a long task.
SHORT = '{"visibility_timeout": 3, "unacked_restore_interval": 1}'

faults = pytest.mark.faults  # the tests that run workers for tens of seconds


@pytest.fixture
def make_tasks(tmp_path: Path, clean_pg: str, redis_url: str, spawn: t.Callable[..., Process],
               monkeypatch: pytest.MonkeyPatch) -> t.Iterator[t.Callable[..., Tasks]]:
    """``make_tasks(transport_options=None)``: the project, its tables, a clean Redis db."""
    # A database of Redis of their own: the unacked index is one per database.
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    made: list[Tasks] = []

    def make(transport_options: str | None = None) -> Tasks:
        env = {}
        if transport_options:
            env["FLASKER__CELERY__BROKER_TRANSPORT_OPTIONS"] = transport_options
            monkeypatch.setenv("FLASKER__CELERY__BROKER_TRANSPORT_OPTIONS", transport_options)
        project = write_tasks_project(tmp_path, monkeypatch,
                                      f"BROKER_URL = {broker}\nRESULT_BACKEND = {broker}",
                                      f"DB_URL = {clean_pg}")
        with redis.Redis.from_url(broker) as client:
            client.flushdb()
        made.append(Tasks(project, spawn, env))
        return made[-1]

    yield make
    for tasks in made:
        tasks.stop_workers()
        tasks.project.close()


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "rediss", "sentinel"])
def test_a_redis_broker_gets_a_short_visibility_timeout_and_a_fast_sweep(
        tmp_path: Path, scheme: str) -> None:
    settings = settings_of(tmp_path, f"broker_url = {scheme}://broker:6379/0")
    options = settings["broker_transport_options"]
    assert {key: options[key] for key in REDIS_TRANSPORT_OPTIONS} == {
        "visibility_timeout": 30, "unacked_restore_interval": 5, "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 30}
    assert settings["worker_cancel_long_running_tasks_on_connection_loss"] is True
    # A lease survives two missed renewals.
    assert renewal_interval(30) == 10


def test_transport_options_of_the_config_are_merged_over_flaskers(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, 'broker_url = redis://broker:6379/0\n'
                                   'broker_transport_options = {"visibility_timeout": 120,'
                                   ' "global_keyprefix": "app:"}')
    options = settings["broker_transport_options"]
    assert options.items() >= {**REDIS_TRANSPORT_OPTIONS, "visibility_timeout": 120,
                               "global_keyprefix": "app:"}.items()


def test_other_brokers_get_no_redis_options(tmp_path: Path) -> None:
    assert "broker_transport_options" not in settings_of(tmp_path, "broker_url = memory://")
    sqs = settings_of(tmp_path / "sqs", "broker_url = sqs://")
    assert sqs["broker_transport_options"] == {"visibility_timeout": 3600}


def test_transport_options_that_are_not_an_object_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'CELERY.broker_transport_options' has value '\[30\]'"
                                          r" \(.*default.cfg:\d+\). Not a JSON object."):
        settings_of(tmp_path, "broker_url = redis://broker:6379/0\n"
                            "broker_transport_options = [30]")
    path = write_project(tmp_path, "[PROJECT]\nNAME = lease\n[CELERY]\n"
                                   "broker_url = redis://broker:6379/0\n")
    project = Project(path, overrides={"APP": {"TESTING": True},
                                       "CELERY": {"broker_transport_options": [30]}})
    with pytest.raises(ConfigError, match=r"'CELERY.broker_transport_options' \(code override\)"
                                          r" has value \[30\]: expected a JSON object"):
        celery_settings(project.config)


# -- the renewal itself -----------------------------------------------------------------------


def test_a_failed_renewal_is_a_warning_and_the_next_tick_renews(
        caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable for a tick (a server of its own, paused): a warning, no error."""
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(os.environ.get("REDIS_IMAGE", "redis:7")) as server:
        url = f"redis://{server.get_container_host_ip()}:{server.get_exposed_port(6379)}/0"
        options = {**REDIS_TRANSPORT_OPTIONS, "socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        connection = Connection(url, transport_options=options)  # type: ignore[no-untyped-call]
        with connection:
            queue = connection.SimpleQueue("lease-test")  # type: ignore[no-untyped-call]
            queue.put({"work": 1})
            message = queue.get(timeout=5)  # received, not acknowledged: held
            qos = connection.default_channel.qos
            index = redis.Redis.from_url(url)

            def score() -> float:
                return t.cast(float, index.zscore(qos.unacked_index_key, message.delivery_tag))

            lease = Lease(qos)
            assert lease.interval == 10  # a third of the visibility timeout
            caplog.set_level("DEBUG", logger="flasker.lease")
            received = score()
            lease.tick()
            assert score() > received
            assert "Renewed the lease of 1 of 1 held task message(s)." in caplog.messages

            server.get_wrapped_container().pause()
            try:
                lease.tick()  # no exception: the thread goes on
            finally:
                server.get_wrapped_container().unpause()
            warning = caplog.records[-1]
            assert warning.levelname == "WARNING"
            assert warning.getMessage().startswith(
                "Could not renew the lease of the task messages this worker holds (")
            assert "retrying in 10 s" in warning.getMessage()

            renewed = score()
            lease.tick()
            assert score() > renewed
            message.ack()
            lease.tick()  # nothing held: nothing to renew, and the acked one stays out
            assert index.zscore(qos.unacked_index_key, message.delivery_tag) is None
            index.close()
            queue.close()


# -- a live worker keeps its tasks -------------------------------------------------------------


@faults
def test_a_long_task_on_a_live_worker_runs_once(make_tasks: t.Callable[..., Tasks]) -> None:
    """A task running over three visibility timeouts, while a second worker sweeps every second."""
    tasks = make_tasks(SHORT)
    busy = tasks.worker("busy", concurrency=1, FLASKER__PROJECT__LOG_LEVEL="DEBUG")
    outcome = tasks.chore.delay(10)
    wait_for(lambda: tasks.starts(outcome.id), timeout=30, what="the long task to start")
    idle = tasks.worker("idle", concurrency=1)
    outcome.get(timeout=60)
    time.sleep(4)  # over a visibility timeout more: nothing comes back late either
    assert len(tasks.starts(outcome.id)) == 1
    assert tasks.count("receipts") == 1
    assert "Renewed the lease of 1 of 1 held task message(s)" in busy.output()
    assert outcome.id not in idle.output()


@faults
def test_a_worker_in_warm_shutdown_keeps_its_long_task(make_tasks: t.Callable[..., Tasks]) -> None:
    """SIGTERM without REMAP_SIGTERM: Celery waits for the task with its event loop stopped."""
    tasks = make_tasks(SHORT)
    stopping = tasks.worker("stopping", concurrency=1)
    outcome = tasks.chore.delay(10)
    wait_for(lambda: tasks.starts(outcome.id), timeout=30, what="the long task to start")
    idle = tasks.worker("idle", concurrency=1)
    os.kill(stopping.popen.pid, signal.SIGTERM)  # the main process only, as 'docker stop' does
    assert stopping.popen.wait(timeout=60) == 0
    assert outcome.get(timeout=10) is None
    time.sleep(4)
    assert len(tasks.starts(outcome.id)) == 1
    assert tasks.count("receipts") == 1
    assert "Warm shutdown" in stopping.output()
    assert outcome.id not in idle.output()


# -- a dead worker loses nothing ---------------------------------------------------------------


@faults
def test_a_killed_task_process_is_run_again_at_once(make_tasks: t.Callable[..., Tasks]) -> None:
    """A task process killed (the kernel's OOM killer): the live worker requeues its task.

    With flasker's defaults (a 30 s visibility timeout): well before that, so not by the
    sweep but by ``task_reject_on_worker_lost``.
    """
    tasks = make_tasks()
    worker = tasks.worker("oom")
    outcome = tasks.chore.delay(5)
    pid = wait_for(lambda: tasks.starts(outcome.id), timeout=30, what="the task to start")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: tasks.count("receipts") == 1, timeout=20,
             what=f"the task to run again; worker log: {worker.log}")
    assert len(tasks.starts(outcome.id)) == 2
    assert "Worker exited prematurely: signal 9 (SIGKILL)" in worker.output()


@faults
def test_a_worker_killed_mid_run_loses_none_of_1000_tasks(
        make_tasks: t.Callable[..., Tasks]) -> None:
    """SIGKILL to a worker and its processes in the middle of 1,000 tasks, then a restart.

    flasker's defaults: the killed worker's messages return once their lease lapses
    (30 s after its last renewal), and run on the other worker or the restarted one.
    """
    tasks = make_tasks()
    doomed = tasks.worker("doomed")
    survivor = tasks.worker("survivor")
    sent = {tasks.chore.delay(0.02).id for _ in range(1000)}
    wait_for(lambda: tasks.count("receipts") >= 500, timeout=120,
             what="the workers to run half of the tasks")
    os.killpg(doomed.popen.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    done_at_kill = tasks.count("receipts")
    assert done_at_kill < 1000, "the run ended before the kill: make the tasks longer"
    doomed.popen.wait()
    restarted = tasks.worker("doomed")  # restarted, as Docker's restart policy does

    try:
        wait_for(lambda: tasks.count("receipts") == 1000,
                 timeout=max(90 - (time.monotonic() - killed_at), 1), interval=0.5,
                 what="all 1000 tasks within 90 s of the crash")
    except AssertionError as e:
        raise AssertionError(
            f"{e}: {tasks.count('receipts')} done ({done_at_kill} at the kill, at"
            f" {time.monotonic() - killed_at:.0f} s)\n--- survivor\n{survivor.output()[-4000:]}"
            f"\n--- restarted\n{restarted.output()[-4000:]}") from None
    recovered = time.monotonic() - killed_at
    assert tasks.ids("receipts") == sent
    time.sleep(2)
    assert tasks.count("receipts") == 1000
    # Only what the killed worker held (prefetch: 2) ran twice; every other task once.
    again = tasks.count("starts") - 1000
    assert 0 <= again <= 2, again
    print(f"\n1000 tasks, a worker SIGKILLed after {done_at_kill} were done: all done"
          f" {recovered:.1f} s after the crash; {again} ran twice.")
