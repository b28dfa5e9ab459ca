"""The API extension's writes, filtered reads and deep pages against its peers.

Three servers on the same PostgreSQL tables (``benchmarks/api/writers.py``), each its own
process served as the read benchmark's are (gunicorn, one gthread worker of one thread,
127.0.0.1, one kept-alive ``requests.Session`` each, checked to use one connection):
flasker's ``APIManager``, flask-smorest with marshmallow-sqlalchemy schemas, and
Flask-Restless-NG (JSON:API) in the virtualenv ``bench_api.restless_python`` makes. The same
rules hold everywhere: a house needs an ``address`` of at most 128 characters and an integer
``rooms`` (checked: a body breaking either is refused by every server, and nothing is
written).

- Single objects: each round POSTs a house, PATCHes its ``rooms``, PUTs it whole and
  DELETEs it, on every server in turn. Flask-Restless-NG has no PUT (JSON:API replaces with
  a PATCH of every attribute): its "PUT" is that PATCH. Beside them, the database alone:
  the same statement and its COMMIT straight through psycopg, the floor of every server
  (each COMMIT waits for PostgreSQL's log to reach the disk).
- Bulk create of 1,000 houses: flasker's POST of an array; flask-smorest's closest, a view
  loading a list (``many=True``) that adds them all and commits once; Flask-Restless-NG
  (JSON:API has no bulk create) 1,000 POSTs of one house over the kept-alive connection.
  The created objects are counted in the database after every round, then removed.
- Reads: 20,000 houses, half with ``rooms >= 2``; the page of 20 of those sorted by
  ``address``, first and at offset 9,000, on every server (with the total each gives), and
  flasker's keyset pages (``cursor``, ``total=false``) after the 20th and after the 9,000th
  item, against its offset page at 9,000 without total. Every page is checked against the
  same SQL's rows.

Rounds alternate between the servers; the median of each is kept. Targets: flasker at
least 2 times faster than each peer on every write, and keyset pages as fast 9,000 deep as
near the start.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import psycopg
import requests
import sqlalchemy as sa

from .api.writers import Base, House
from .bench_api import restless_python

if t.TYPE_CHECKING:
    from .__main__ import Context

HERE = Path(__file__).parent
WRITERS = HERE / "api" / "writers.py"
IMPLS = ("flasker", "smorest", "restless")
PEERS = (("restless", "Flask-Restless-NG"), ("smorest", "flask-smorest"))
HOUSES = 20_000
PAGE = 20
DEEP = 9_000
BULK = 1_000
JSONAPI = "application/vnd.api+json"


def create(url: str) -> None:
    """The tables (dropped first), filled with 20,000 houses of unique addresses, analyzed."""
    engine = sa.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        # Addresses in another order than the keys, so that sorting by them is work.
        connection.execute(sa.insert(House), [
            {"id": i, "address": f"{(i * 7919) % HOUSES:05d} Cat Street", "rooms": i % 4}
            for i in range(1, HOUSES + 1)])
        connection.execute(sa.text("SELECT setval(pg_get_serial_sequence('houses', 'id'),"
                                   " :n)"), {"n": HOUSES})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE houses, cats"))
    engine.dispose()


def drop(url: str) -> None:
    engine = sa.create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()


class Server:
    """One implementation's server process on 127.0.0.1, and a client kept alive to it."""

    def __init__(self, impl: str, python: Path, url: str, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.impl = impl
        self.log = tmp / f"{impl}.log"
        argv = [str(python), str(WRITERS), impl, str(self.port), url]
        if impl == "flasker":
            argv.append(str(tmp / "flasker-project"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASKER")}
        self.process = subprocess.Popen(argv, cwd=tmp, env=env, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}/api/houses"
        self.session = requests.Session()
        self.connections: set[str] = set()
        self.statements: dict[str, int] = {}
        if impl == "restless":  # JSON:API refuses other media types
            self.session.headers["Accept"] = JSONAPI
        deadline = time.monotonic() + 60
        while True:
            try:
                self.session.get(f"http://127.0.0.1:{self.port}/ready", timeout=5)
                break
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The {impl} server did not start:\n"
                                       f"{self.log.read_text()[-3000:]}") from None
                time.sleep(0.2)

    def call(self, op: str, method: str, url: str, body: t.Any = None,
             expect: tuple[int, ...] = (200,)) -> tuple[float, requests.Response]:
        """One request, timed; its status checked, its statements noted under ``op``."""
        data = None if body is None else json.dumps(body)
        headers = {} if body is None else {
            "Content-Type": JSONAPI if self.impl == "restless" else "application/json"}
        started = time.perf_counter()
        response = self.session.request(method, url, data=data, headers=headers, timeout=120)
        elapsed = time.perf_counter() - started
        if response.status_code not in expect:
            raise RuntimeError(f"{self.impl} {method} {url}: {response.status_code}"
                               f" {response.text[:500]}")
        self.connections.add(response.headers["X-Client-Port"])
        self.statements[op] = int(response.headers["X-Statements"])
        return elapsed, response

    # -- single objects, in each implementation's own terms ----------------------------------

    def post(self, address: str, rooms: int, op: str = "POST") -> tuple[float, int]:
        if self.impl == "restless":
            body: t.Any = {"data": {"type": "houses",
                                    "attributes": {"address": address, "rooms": rooms}}}
            elapsed, response = self.call(op, "POST", self.base, body, (201,))
            return elapsed, int(response.json()["data"]["id"])
        elapsed, response = self.call(op, "POST", self.base + "/", {"address": address,
                                                                     "rooms": rooms}, (201,))
        return elapsed, int(response.json()["id"])

    def change(self, op: str, key: int, fields: dict[str, t.Any]) -> float:
        """PATCH (some fields) or PUT (all): Flask-Restless-NG PATCHes in both cases."""
        if self.impl == "restless":
            body = {"data": {"type": "houses", "id": str(key), "attributes": fields}}
            return self.call(op, "PATCH", f"{self.base}/{key}", body, (200, 204))[0]
        return self.call(op, op, f"{self.base}/{key}", fields)[0]

    def delete(self, key: int) -> float:
        return self.call("DELETE", "DELETE", f"{self.base}/{key}", None, (204,))[0]

    def bulk(self, items: list[dict[str, t.Any]]) -> float:
        if self.impl == "restless":  # no bulk create in JSON:API: one POST each
            return sum(self.post(item["address"], item["rooms"], "bulk")[0] for item in items)
        url = self.base + ("/" if self.impl == "flasker" else "/bulk")
        elapsed, response = self.call("bulk", "POST", url, items, (201,))
        body = response.json()
        created = body["items"] if self.impl == "flasker" else body
        if len(created) != len(items):
            raise AssertionError(f"{self.impl} answered {len(created)} of {len(items)} houses.")
        return elapsed

    def refuses(self, body: dict[str, t.Any]) -> int:
        """The status of a POST that breaks the rules (4xx expected)."""
        if self.impl == "restless":
            body = {"data": {"type": "houses", "attributes": body}}
        url = self.base + ("" if self.impl == "restless" else "/")
        return self.call("refused", "POST", url, body, (400, 409, 422))[1].status_code

    # -- reads --------------------------------------------------------------------------------

    def page_url(self, offset: int) -> str:
        """The filtered, sorted page of 20 at ``offset``, with the total each gives."""
        if self.impl == "flasker":
            return f"{self.base}/?filter=rooms:ge:2&sort=address&limit={PAGE}&offset={offset}"
        if self.impl == "smorest":
            return f"{self.base}/?rooms_min=2&page={offset // PAGE + 1}&page_size={PAGE}"
        objects = json.dumps([{"name": "rooms", "op": "ge", "val": 2}])
        return (f"{self.base}?filter[objects]={objects}&sort=address"
                f"&page[number]={offset // PAGE + 1}&page[size]={PAGE}")

    def read(self, op: str, url: str) -> tuple[float, list[int], dict[str, t.Any]]:
        elapsed, response = self.call(op, "GET", url)
        body = response.json()
        if self.impl == "restless":
            keys = [int(item["id"]) for item in body["data"]]
        else:
            keys = [item["id"] for item in (body if self.impl == "smorest" else body["items"])]
        return elapsed, keys, body

    def check_reused(self) -> None:
        if len(self.connections) != 1:
            raise AssertionError(f"{self.impl}: {len(self.connections)} TCP connections were"
                                 " opened where one kept alive should serve every request.")

    def stop(self) -> None:
        self.session.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the run ----------------------------------------------------------------------------------


def run(ctx: Context) -> list[dict[str, t.Any]]:
    rounds = {"single": 30, "bulk": 1, "read": 10} if ctx.quick else {
        "single": 100, "bulk": 3, "read": 40}
    create(ctx.pg_url)
    pythons = {impl: Path(sys.executable) for impl in IMPLS}
    pythons["restless"] = restless_python(ctx.tmp)
    servers: dict[str, Server] = {}
    engine = sa.create_engine(ctx.pg_url)
    try:
        for impl in IMPLS:
            servers[impl] = Server(impl, pythons[impl], ctx.pg_url, ctx.tmp)
        check_rules(servers, engine)
        timings = measure_reads(servers, engine, rounds["read"])
        timings |= measure_singles(servers, engine, rounds["single"])
        timings |= measure_bulk(servers, engine, rounds["bulk"])
        for server in servers.values():
            server.check_reused()
    finally:
        for server in servers.values():
            server.stop()
        engine.dispose()
        drop(ctx.pg_url)
    return results(timings, {impl: s.statements for impl, s in servers.items()})


def count(engine: sa.Engine, where: str, **params: t.Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM houses WHERE {where}"),
                                      params).scalar_one())


def check_rules(servers: dict[str, Server], engine: sa.Engine) -> None:
    """Every server refuses the same bad bodies (too long, missing, wrong type); none writes."""
    for body in ({"address": "x" * 129, "rooms": 1}, {"address": "no rooms"},
                 {"address": "rooms as text", "rooms": "many"}, {"rooms": 2}):
        for server in servers.values():
            server.refuses(body)
    if count(engine, f"id > {HOUSES}"):
        raise AssertionError("A refused body was written.")


def measure_reads(servers: dict[str, Server], engine: sa.Engine, rounds: int
                  ) -> dict[tuple[str, str], float]:
    with engine.connect() as connection:
        def expected(offset: int) -> list[int]:
            return list(connection.execute(sa.text(
                "SELECT id FROM houses WHERE rooms >= 2 ORDER BY address, id"
                " LIMIT :n OFFSET :o"), {"n": PAGE, "o": offset}).scalars())

        want = {0: expected(0), PAGE: expected(PAGE), DEEP: expected(DEEP)}
    flasker = servers["flasker"]
    listing = f"{flasker.base}/?filter=rooms:ge:2&sort=address&limit={PAGE}&total=false"
    cursors = {}
    for depth in (PAGE, DEEP):  # the cursor after the 20th, and after the 9,000th item
        body = flasker.read("cursor", f"{listing}&cursor=&offset={depth - PAGE}")[2]
        cursors[depth] = body["next_cursor"]
    urls: dict[tuple[str, str], str] = {}
    for impl, server in servers.items():
        urls[(impl, "page 1")] = server.page_url(0)
        urls[(impl, "offset")] = server.page_url(DEEP)
    urls[("flasker", "keyset near")] = f"{listing}&cursor={cursors[PAGE]}"
    urls[("flasker", "keyset deep")] = f"{listing}&cursor={cursors[DEEP]}"
    urls[("flasker", "offset no total")] = f"{listing}&offset={DEEP}"
    wanted = {"page 1": want[0], "offset": want[DEEP], "keyset near": want[PAGE],
              "keyset deep": want[DEEP], "offset no total": want[DEEP]}
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in urls}
    for (impl, op), url in urls.items():  # warm up, check the answers
        keys = servers[impl].read(op, url)[1]
        if keys != wanted[op]:
            raise AssertionError(f"{impl} ({op}) gave the houses {keys[:5]}..., not"
                                 f" {wanted[op][:5]}...")
    for _round in range(rounds):
        for (impl, op), url in urls.items():
            samples[(impl, op)].append(servers[impl].read(op, url)[0])
    return {k: statistics.median(v) for k, v in samples.items()}


def measure_singles(servers: dict[str, Server], engine: sa.Engine, rounds: int
                    ) -> dict[tuple[str, str], float]:
    """POST, PATCH, PUT and DELETE of one house per round on each server; checked the first."""
    samples: dict[tuple[str, str], list[float]] = {
        (impl, op): [] for impl in [*servers, "database"]
        for op in ("POST", "PATCH", "PUT", "DELETE")}
    database = psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(
        hide_password=False))
    for number in range(rounds + 1):
        for op, elapsed in alone(database, number).items():
            if number:
                samples[("database", op)].append(elapsed)
        for impl, server in servers.items():
            address = f"single {impl} {number}"
            posted, key = server.post(address, 3)
            patched = server.change("PATCH", key, {"rooms": 4})
            if number == 0:
                found = count(engine, "id = :k AND address = :a AND rooms = 4", k=key,
                              a=address)
                if found != 1:
                    raise AssertionError(f"{impl}: the house POSTed and PATCHed is not there.")
            put = server.change("PUT", key, {"address": address + " again", "rooms": 5})
            if number == 0 and count(engine, "id = :k AND address = :a AND rooms = 5", k=key,
                                     a=address + " again") != 1:
                raise AssertionError(f"{impl}: the house PUT is not there.")
            deleted = server.delete(key)
            if number == 0:  # the first round warms up and checks
                continue
            for op, elapsed in (("POST", posted), ("PATCH", patched), ("PUT", put),
                                ("DELETE", deleted)):
                samples[(impl, op)].append(elapsed)
    database.close()
    if count(engine, f"id > {HOUSES}"):
        raise AssertionError("Houses that were DELETEd are still there.")
    return {k: statistics.median(v) for k, v in samples.items()}


def alone(database: psycopg.Connection[t.Any], number: int) -> dict[str, float]:
    """The database's share of each write: its statement and COMMIT, straight through psycopg.

    What no server can go below: the write made durable (PostgreSQL waits for its log
    to reach the disk at each COMMIT), over one open connection, without HTTP or Python.
    """
    timings = {}
    started = time.perf_counter()
    key = database.execute("INSERT INTO houses (address, rooms) VALUES (%s, 3) RETURNING id",
                           (f"alone {number}",)).fetchone()[0]  # type: ignore[index]
    database.commit()
    timings["POST"] = time.perf_counter() - started
    for op, sql in (("PATCH", "UPDATE houses SET rooms = 4 WHERE id = %s"),
                    ("PUT", "UPDATE houses SET address = 'again', rooms = 5 WHERE id = %s"),
                    ("DELETE", "DELETE FROM houses WHERE id = %s")):
        started = time.perf_counter()
        database.execute(sql, (key,))
        database.commit()
        timings[op] = time.perf_counter() - started
    return timings


def measure_bulk(servers: dict[str, Server], engine: sa.Engine, rounds: int
                 ) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], list[float]] = {(impl, "bulk"): [] for impl in servers}
    for number in range(rounds + 1):
        for impl, server in servers.items():
            prefix = f"bulk {impl} {number} "
            items = [{"address": f"{prefix}{i}", "rooms": i % 4} for i in range(BULK)]
            elapsed = server.bulk(items)
            created = count(engine, "address LIKE :p", p=prefix + "%")
            if created != BULK:
                raise AssertionError(f"{impl}: {created} houses created, not {BULK}.")
            with engine.begin() as connection:
                connection.execute(sa.text(f"DELETE FROM houses WHERE id > {HOUSES}"))
            if number:  # the first round warms up
                samples[(impl, "bulk")].append(elapsed)
    return {k: statistics.median(v) for k, v in samples.items()}


# -- the results ------------------------------------------------------------------------------


def results(timings: dict[tuple[str, str], float], statements: dict[str, dict[str, int]]
            ) -> list[dict[str, t.Any]]:
    rows: list[dict[str, t.Any]] = []
    ms = {k: v * 1000 for k, v in timings.items()}
    labels = {
        "POST": "api POST one house", "PATCH": "api PATCH one house",
        "PUT": "api PUT one house", "DELETE": "api DELETE one house",
        "bulk": f"api create {BULK:,} houses",
        "page 1": "api GET filtered, sorted page 1 (20)",
        "offset": f"api GET filtered, sorted page at offset {DEEP:,}",
    }
    notes = {("restless", "PUT"): " (PATCH of every attribute: JSON:API has no PUT)",
             ("restless", "bulk"): f" ({BULK:,} POSTs: JSON:API has no bulk create)",
             ("smorest", "bulk"): " (a view loading a list, many=True)"}
    for op, label in labels.items():
        writes = op not in ("page 1", "offset")
        for peer, title in PEERS:
            rows.append({
                "name": f"{label}: {title} / flasker", "value": ms[(peer, op)], "unit": "ms",
                "ratio": ms[(peer, op)] / ms[("flasker", op)],
                "target": ">= 2" if writes else "",
                "note": f"{title} {ms[(peer, op)]:.2f} ms{notes.get((peer, op), '')},"
                        f" flasker {ms[('flasker', op)]:.2f} ms; statements"
                        f" {statements[peer].get(op)} / {statements['flasker'].get(op)}",
            })
    for op in ("POST", "PATCH", "PUT", "DELETE"):
        floor, flasker = ms[("database", op)], ms[("flasker", op)]
        rows.append({
            "name": f"{labels[op]}: flasker / the database alone", "value": flasker,
            "unit": "ms", "ratio": flasker / floor, "target": "",
            "note": f"its statement and COMMIT through psycopg {floor:.2f} ms: the floor of"
                    " every server",
        })
    near, deep = ms[("flasker", "keyset near")], ms[("flasker", "keyset deep")]
    rows.append({
        "name": f"api keyset page {DEEP:,} deep / keyset page after {PAGE}", "value": deep,
        "unit": "ms", "ratio": deep / near, "target": "~ 1",
        "note": f"flasker cursor pages: {deep:.2f} ms deep, {near:.2f} ms near the start",
    })
    offset = ms[("flasker", "offset no total")]
    rows.append({
        "name": f"api offset page at {DEEP:,} / keyset page {DEEP:,} deep", "value": offset,
        "unit": "ms", "ratio": offset / deep, "target": "",
        "note": f"flasker, both without total: offset {offset:.2f} ms, keyset {deep:.2f} ms",
    })
    return rows


def markdown(rows: t.Sequence[dict[str, t.Any]]) -> str:
    """The results as the Markdown table of benchmarks/README.md."""
    lines = ["| benchmark | value | ratio | target | note |", "| --- | ---: | ---: | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['value']:.2f} {row['unit']} | {row['ratio']:.2f}"
                     f" | {row['target']} | {row['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.bench_writes [--quick]: this benchmark alone
    from benchmarks.__main__ import run_alone

    run_alone(run, markdown)
