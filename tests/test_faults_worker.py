"""The stack's worker killed (SIGKILL) or stopped (SIGTERM) with tasks in flight: nothing lost.

The reference app's ``receipt`` task writes one row keyed by its id into
``task_receipts`` (``ON CONFLICT DO NOTHING``): counted in PostgreSQL, a lost task is a
missing row and a task run twice is still one row. The stack runs with its own settings
(``compose.yaml``, ``services/worker/worker.env``): a 30 s visibility timeout renewed by
the live worker, a 20 s soft shutdown on SIGTERM, one worker container of two processes.
"""

from __future__ import annotations

import json
import time
import typing as t

import pytest

from .conftest import wait_for
from .conftest_stack import Stack, run, stack_test

pytestmark = [pytest.mark.docker, pytest.mark.faults, stack_test]

QUEUE = "houses-and-cats"


def send(stack: Stack, *delays: float) -> list[str]:
    """Send one ``receipt`` task per delay, in order, from the web container; their ids."""
    out = stack.shell("import json\nfrom app.tasks import receipt\n"
                      f"ids = [receipt.delay(d).id for d in {list(delays)!r}]\n"
                      "print('IDS', json.dumps(ids))\n").stdout
    line = next(x for x in out.splitlines() if x.startswith("IDS "))
    return t.cast(list[str], json.loads(line[4:]))


def sql(stack: Stack, query: str) -> str:
    """One value from PostgreSQL, by psql in its container (faster than 'flasker shell')."""
    return stack.compose("exec", "-T", "postgres", "psql", "-U", stack.values["POSTGRES_USER"],
                         "-d", stack.values["POSTGRES_DB"], "-tAc", query).stdout.strip()


def receipts(stack: Stack) -> int:
    return int(sql(stack, "SELECT count(*) FROM task_receipts"))


def receipt_ids(stack: Stack) -> set[str]:
    return set(sql(stack, "SELECT task_id FROM task_receipts").split())


def broker_state(stack: Stack) -> dict[str, t.Any]:
    """The ids of the task messages queued in Redis, and of those not yet acknowledged."""
    out = stack.shell(
        "import json\n"
        "with celery.connection_for_write() as connection:\n"
        "    client = connection.default_channel.client\n"
        f"    queued = [json.loads(m)['headers']['id'] for m in client.lrange({QUEUE!r}, 0, -1)]\n"
        "    unacked = [json.loads(v)[0]['headers']['id'] for v in client.hvals('unacked')]\n"
        "    print('BROKER', json.dumps({'queued': queued, 'unacked': unacked}))\n"
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BROKER "))
    return t.cast(dict[str, t.Any], json.loads(line[7:]))


def worker_log(stack: Stack) -> str:
    return stack.compose("logs", "--no-color", "worker").stdout


def worker_state(stack: Stack) -> dict[str, t.Any]:
    container = next(c["ID"] for c in stack.containers() if c["Service"] == "worker")
    state = json.loads(run(["docker", "inspect", container]).stdout)[0]["State"]
    return t.cast(dict[str, t.Any], state)


def test_a_worker_killed_mid_run_loses_none_of_1000_tasks(stack: Stack) -> None:
    """'docker compose kill -s SIGKILL worker' in the middle of 1,000 tasks, then 'start'."""
    before = receipts(stack)
    sent = set(send(stack, *[0.02] * 1000))
    wait_for(lambda: receipts(stack) - before >= 400, timeout=120, interval=0.5,
             what="the worker to run 400 of the tasks")
    stack.compose("kill", "-s", "SIGKILL", "worker")
    killed_at = time.monotonic()
    done_at_kill = receipts(stack) - before
    assert done_at_kill < 1000, "the run ended before the kill: make the tasks longer"
    assert worker_state(stack)["ExitCode"] == 137
    stack.compose("start", "worker")

    try:
        wait_for(lambda: receipts(stack) - before == 1000,
                 timeout=max(90 - (time.monotonic() - killed_at), 1), interval=1,
                 what="all 1000 tasks within 90 s of the crash")
    except AssertionError as e:  # where the missing tasks are, as the stack is now
        missing = sent - receipt_ids(stack)
        state = broker_state(stack)
        raise AssertionError(
            f"{e}\n{len(missing)} missing ({done_at_kill} done at the kill): "
            f"{len(missing & set(state['queued']))} queued, "
            f"{len(missing & set(state['unacked']))} unacked, the rest nowhere in Redis\n"
            f"{stack.report()}") from e
    recovered = time.monotonic() - killed_at
    assert sent <= receipt_ids(stack)
    time.sleep(2)
    assert receipts(stack) - before == 1000
    print(f"\nstack: worker SIGKILLed after {done_at_kill} of 1000 tasks; all done"
          f" {recovered:.1f} s after the crash")


def test_a_stopped_worker_finishes_or_hands_back_its_tasks_and_leaves_the_queue(
        stack: Stack) -> None:
    """'docker compose stop worker' while two tasks run and fifty wait, then 'start'.

    The short task ends within the 20 s soft shutdown; the long one is cancelled and its
    message handed back to the queue at once; the queued ones stay queued. Beat is stopped
    meanwhile: its 'tick' every 10 s would be one more message in flight, none of the test's.
    """
    stack.compose("stop", "beat")
    before = receipts(stack)
    short, long = send(stack, 5, 25)
    wait_for(lambda: all(f"[{i}] received" in worker_log(stack) for i in (short, long)),
             timeout=60, interval=0.5, what="both tasks to start")
    queued = send(stack, *[0] * 50)
    started = time.monotonic()
    stack.compose("stop", "worker", timeout=120)
    stopped_in = time.monotonic() - started

    state = worker_state(stack)
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state  # not SIGKILLed (137)
    assert stopped_in < 30, stopped_in  # within its stop_grace_period
    assert receipt_ids(stack) >= {short} and long not in receipt_ids(stack)
    broker = broker_state(stack)
    assert set(broker["queued"]) >= {long, *queued}  # at once, not after the visibility timeout
    assert broker["unacked"] == [], (  # and none both queued and held
        f"held {broker['unacked']}: short {short}, long {long}, queued {queued}\n"
        f"{worker_log(stack)[-6000:]}")
    assert receipts(stack) - before == 1
    log = worker_log(stack)
    assert "Initiating Soft Shutdown, terminating in 20.0 seconds" in log
    assert f"{short}] succeeded" in log

    stack.compose("start", "worker")
    wait_for(lambda: receipts(stack) - before == 52, timeout=120, interval=1,
             what=f"every task after the restart\n{stack.report()}")
    assert receipt_ids(stack) >= {short, long, *queued}
    stack.compose("start", "beat")
    print(f"\nstack: 'docker compose stop worker' took {stopped_in:.1f} s; 1 task finished,"
          " 1 handed back, 50 left queued; all 52 done after the restart")
