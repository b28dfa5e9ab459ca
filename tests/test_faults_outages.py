"""Faults 3 and 4 of the stack: PostgreSQL, then Redis, stopped for 30 s under traffic.

One compose stack for the module. While a server is down, requests go to web over HTTP on
127.0.0.1 without pause: every answer comes within 2 s and is a 200, a 302 or a 503 (the
app's own page with ``Retry-After``, or problem+json for JSON clients), never a 500. Then
the server comes back: the first request succeeds, every task sent before or during the
outage completes, and worker, beat and flower go on without a restart.
"""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t

import pytest
import requests

from .conftest import wait_for
from .conftest_stack import Stack, run, stack_test

pytestmark = [pytest.mark.docker, pytest.mark.faults]

OUTAGE = 30.0
BOUND = 2.0
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
APP_SERVICES = ("web", "worker", "beat", "flower")
QUEUE = "houses-and-cats"  # the reference app's: its name, slugged
#: A kind of request the probe sends: its name, method, and the arguments of requests'.
Kind = tuple[str, str, dict[str, t.Any]]


class Probe:
    """Requests sent in a loop from a thread: when each was sent, its status and time."""

    def __init__(self, requests_: t.Sequence[Kind]) -> None:
        self.kinds = requests_
        self.records: list[tuple[float, str, int, float, str]] = []
        self.sent_tasks: list[str] = []
        self._stop = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, method, kwargs in ((k[0], k[1], k[2]) for k in self.kinds):
                self.send(name, method, kwargs)

    def send(self, name: str, method: str, kwargs: dict[str, t.Any]) -> requests.Response | None:
        url = kwargs.pop("url")
        started = time.monotonic()
        try:
            reply = self._session.request(method, url, timeout=10, allow_redirects=False,
                                          **kwargs)
        except requests.RequestException as e:
            self.records.append((started, name, 0, time.monotonic() - started, repr(e)))
            return None
        finally:
            kwargs["url"] = url
        body = reply.text if reply.status_code >= 500 else ""
        self.records.append((started, name, reply.status_code, time.monotonic() - started,
                             body[:2000]))
        if reply.status_code == 503:
            self.check_503(name, reply)
        if reply.status_code == 302 and (match := re.search(r"task=([0-9a-f-]{36})",
                                                            reply.headers["Location"])):
            self.sent_tasks.append(match.group(1))
        return reply

    def check_503(self, name: str, reply: requests.Response) -> None:
        """A 503 is the app's page with Retry-After, or problem details for JSON clients."""
        assert reply.headers.get("Retry-After") == "5", (name, dict(reply.headers))
        if name.endswith("json") or name == "readyz":
            assert reply.headers["Content-Type"].startswith(("application/problem+json",
                                                            "application/json")), name
            json.loads(reply.text)
        else:
            assert reply.headers["Content-Type"].startswith("text/html"), name
            assert "Back to the houses" in reply.text  # the reference app's own page
            assert "Try again in a few seconds." in reply.text

    def between(self, start: float, end: float) -> list[tuple[float, str, int, float, str]]:
        return [r for r in self.records if start <= r[0] and r[0] + r[3] <= end]

    def figures(self, start: float, end: float) -> dict[str, t.Any]:
        window = self.between(start, end)
        times = sorted(r[3] for r in window)
        statuses: dict[str, int] = {}
        for r in window:
            statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
        slowest: dict[str, float] = {}
        for r in self.records:  # the whole run, the service's stop and start included
            slowest[r[1]] = round(max(slowest.get(r[1], 0.0), r[3]), 3)
        return {"sent": len(window), "statuses": statuses, "slowest_by_kind": slowest,
                "max_s": round(times[-1], 3) if times else None,
                "p99_s": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3)
                if times else None}


def _form(web: str) -> tuple[dict[str, str], dict[str, str]]:
    """A form's CSRF token, and the session cookie it belongs to as a header.

    The stack's cookies are Secure: requests would not send them over http://127.0.0.1.
    """
    session = requests.Session()
    match = CSRF_RE.search(session.get(web, timeout=10).text)
    assert match
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    return {"csrf_token": match.group(1)}, {"Cookie": cookie}


def _send_tasks(stack: Stack, count: int, delay: float) -> list[str]:
    out = stack.shell("from app.tasks import census\n"
                      f"print('IDS', *[census.delay(delay={delay}).id for _ in range({count})])\n")
    line = next(x for x in out.stdout.splitlines() if x.startswith("IDS"))
    return line.split()[1:]


def _states(web: str, ids: t.Iterable[str]) -> dict[str, str]:
    states = {}
    for task_id in ids:
        reply = requests.get(f"{web}/tasks/{task_id}", headers=JSON, timeout=10)
        states[task_id] = reply.json()["state"] if reply.ok else f"HTTP {reply.status_code}"
    return states


def _all_succeed(stack: Stack, web: str, ids: list[str], what: str) -> dict[str, str]:
    """Wait until every task in ``ids`` succeeded; else fail with their states and the logs."""
    last: dict[str, str] = {}

    def done() -> dict[str, str] | None:
        last.update(_states(web, ids))
        return dict(last) if set(last.values()) == {"SUCCESS"} else None

    try:
        return t.cast(dict[str, str], wait_for(done, timeout=180, interval=2, what=what))
    except AssertionError as e:
        behind = {k: v for k, v in last.items() if v != "SUCCESS"}
        logs = stack.compose("logs", "--no-color", "--tail", "150", "worker", check=False)
        raise AssertionError(f"{e}\nnot succeeded: {behind}\n--- worker\n"
                             f"{logs.stdout[-12000:]}") from None


def _started_at(stack: Stack) -> dict[str, str]:
    found = {}
    for container in stack.containers():
        if container["Service"] in APP_SERVICES:
            state = json.loads(run(["docker", "inspect", container["ID"]]).stdout)[0]["State"]
            found[container["Service"]] = f"{state['Status']} {state['StartedAt']}"
    return found


def _redis(stack: Stack, *command: str) -> str:
    return stack.compose("exec", "-T", "redis", "redis-cli", "--raw", *command).stdout.strip()


def _idle(stack: Stack) -> bool:
    """Nothing queued or held by a worker: the tasks of the test before have all ended."""
    return _redis(stack, "llen", QUEUE) == "0" and _redis(stack, "hlen", "unacked") == "0"


def _start_idle(stack: Stack) -> dict[str, str]:
    """Wait for an idle stack (a test's tasks are not the next one's), then its start times."""
    wait_for(lambda: _idle(stack), timeout=240, interval=2,
             what="the tasks of the test before to end")
    return _started_at(stack)


def _ready(stack: Stack, service: str) -> bool:
    """The server accepts connections (redis-cli exits 0 even when refused: read it)."""
    if service == "postgres":
        test = ["pg_isready", "-U", stack.values.get("POSTGRES_USER", "flasker")]
        return stack.compose("exec", "-T", service, *test, check=False).returncode == 0
    answer = stack.compose("exec", "-T", service, "redis-cli", "ping", check=False)
    return answer.stdout.strip() == "PONG"


def _outage(stack: Stack, service: str, probe: Probe) -> dict[str, float]:
    """Stop ``service`` for OUTAGE seconds under the probe; the times of each step."""
    times = {"stop_sent": time.monotonic()}
    stack.compose("stop", service, timeout=120)
    times["down"] = time.monotonic()
    time.sleep(max(OUTAGE - (times["down"] - times["stop_sent"]), 0))
    times["start_sent"] = time.monotonic()
    stack.compose("start", service, timeout=120)
    wait_for(lambda: _ready(stack, service), timeout=120, interval=0.2,
             what=f"{service} to accept connections again")
    times["up"] = time.monotonic()
    return times


@pytest.fixture(scope="module")
def web(stack: Stack) -> str:
    return stack.url("web", 8000)


def _assert_never_500(probe: Probe, allowed: set[int], times: dict[str, float]) -> None:
    """No answer but ``allowed``, and none slower than the bound: else say when they came."""

    def when(record: tuple[float, str, int, float, str]) -> str:
        phases = ", ".join(f"{record[0] - at:+.2f} s from {name}" for name, at in times.items())
        return f"{record[1]} {record[2]} in {record[3]:.2f} s ({phases}) {record[4][:300]}"

    bad = [when(r) for r in probe.records if r[2] not in allowed]
    assert not bad, bad[:5]
    slow = [when(r) for r in probe.records if r[3] >= BOUND]
    assert not slow, slow[:5]


@stack_test
def test_postgresql_down_for_30_s(stack: Stack, web: str) -> None:
    before = _start_idle(stack)
    ids = _send_tasks(stack, 16, delay=3)  # busy: 2 processes, 3 s each, reading afterwards
    form, cookie = _form(web)
    kinds: list[Kind] = [
        ("page", "GET", {"url": f"{web}/", "headers": HTML}),
        ("page-json", "GET", {"url": f"{web}/", "headers": JSON}),
        ("enqueue", "POST", {"url": f"{web}/tasks", "headers": {**HTML, **cookie},
                             "data": form}),
        ("readyz", "GET", {"url": f"{web}/readyz"}),
    ]
    with Probe(kinds) as probe:
        times = _outage(stack, "postgres", probe)
        first = probe.send("page", "GET", {"url": f"{web}/", "headers": HTML})
        first_at = time.monotonic()
    # The first request once PostgreSQL accepts connections succeeds.
    assert first is not None and first.status_code == 200, first and first.text[:2000]
    _assert_never_500(probe, {200, 302, 503}, times)
    down = probe.between(times["down"], times["start_sent"])
    pages = [r for r in down if r[1] in ("page", "page-json")]
    assert pages and {r[2] for r in pages} == {503}, pages[:3]
    assert {r[2] for r in down if r[1] == "enqueue"} <= {302}  # Redis is there: tasks go
    ready = [r for r in down if r[1] == "readyz"]
    assert ready and {r[2] for r in ready} == {503}
    after = [r for r in probe.records if r[0] >= times["up"] and r[1] != "readyz"]
    assert {r[2] for r in after} <= {200, 302}, after[:3]

    # Every task, sent before or during the outage, completes: they retried.
    sent = probe.sent_tasks
    states = _all_succeed(stack, web, [*ids, *sent], "every task to succeed")
    logs = stack.compose("logs", "--no-color", "worker").stdout
    retried = set(re.findall(r"census\[([0-9a-f-]{36})\] retry: Retry in", logs))
    assert retried & set(ids), logs[-3000:]
    assert _started_at(stack) == before  # nothing restarted
    print(json.dumps({
        "fault": "postgresql stopped 30 s", **probe.figures(times["down"], times["up"]),
        "outage_s": round(times["up"] - times["down"], 1),
        "first_ok_after_up_s": round(first_at - times["up"], 3),
        "tasks_before": len(ids), "tasks_sent_during": len(sent),
        "tasks_retried": len(retried), "tasks_succeeded": len(states)}))


@stack_test
def test_redis_down_for_30_s_with_tasks_queued(stack: Stack, web: str) -> None:
    before = _start_idle(stack)
    ids = _send_tasks(stack, 20, delay=1)  # 10 s of work for 2 processes: queued at the stop
    time.sleep(2)
    form, cookie = _form(web)
    kinds: list[Kind] = [
        ("page", "GET", {"url": f"{web}/", "headers": HTML}),
        ("task-page", "GET", {"url": f"{web}/?task={ids[-1]}", "headers": HTML}),
        ("enqueue", "POST", {"url": f"{web}/tasks", "headers": {**HTML, **cookie},
                             "data": form}),
        ("enqueue-json", "POST", {"url": f"{web}/tasks", "headers": {**JSON, **cookie},
                                  "data": form}),
        ("state-json", "GET", {"url": f"{web}/tasks/{ids[0]}", "headers": JSON}),
        ("readyz", "GET", {"url": f"{web}/readyz"}),
    ]
    with Probe(kinds) as probe:
        times = _outage(stack, "redis", probe)
        first = probe.send("enqueue", "POST", {"url": f"{web}/tasks",
                                               "headers": {**HTML, **cookie}, "data": form})
        first_at = time.monotonic()
    assert first is not None and first.status_code == 302, first and first.text[:2000]
    _assert_never_500(probe, {200, 302, 503}, times)
    down = probe.between(times["down"], times["start_sent"])
    # Pages that send no task keep working; sending one is refused with a 503.
    assert {r[2] for r in down if r[1] in ("page", "task-page")} == {200}
    assert {r[2] for r in down if r[1] in ("enqueue", "enqueue-json", "state-json")} == {503}
    ready = [r for r in probe.records if r[1] == "readyz" and times["down"] <= r[0]
             and r[0] + r[3] <= times["start_sent"]]
    assert ready and {r[2] for r in ready} == {503}
    body = requests.get(f"{web}/readyz", timeout=10)
    assert body.status_code == 200  # and back

    # Every task queued before the outage runs (Redis's append-only file kept them), and
    # the task sent by the first request after it.
    task_id = re.search(r"task=([0-9a-f-]{36})", first.headers["Location"])
    assert task_id
    everything = [*ids, task_id.group(1)]
    states = _all_succeed(stack, web, everything, "every queued task to succeed")
    done_at = time.monotonic()
    # Worker, beat and flower went on without a restart: the same containers, answering.
    assert _started_at(stack) == before
    assert stack.compose("exec", "-T", "worker", "flasker", "ping", "worker",
                         check=False).returncode == 0
    wait_for(lambda: stack.compose("exec", "-T", "beat", "flasker", "ping", "beat",
                                   check=False).returncode == 0, timeout=90, interval=3,
             what="beat's heartbeat")
    flower = stack.url("flower", 5555)
    credentials = (stack.values["FLOWER_USER"], stack.values["FLOWER_PASSWORD"])
    assert wait_for(lambda: requests.get(f"{flower}/api/workers", params={"refresh": "1"},
                                         auth=credentials, timeout=20).json(),
                    timeout=60, interval=2, what="flower to see the worker")
    print(json.dumps({
        "fault": "redis stopped 30 s", **probe.figures(times["down"], times["up"]),
        "outage_s": round(times["up"] - times["down"], 1),
        "first_ok_after_up_s": round(first_at - times["up"], 3),
        "queued_tasks": len(ids), "tasks_succeeded": len(states),
        "all_done_after_up_s": round(done_at - times["up"], 1)}))
