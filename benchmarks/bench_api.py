"""The API extension against its peers: GET of 100, 1,000 and 10,000 houses with 3 cats each.

Each size is a whole collection: the tables are filled with exactly N houses and 3N cats
(and analyzed, as a live database is) and the whole collection is read (``limit=N``).
Four servers answer the same question on the same PostgreSQL rows, each its own process
served the same way (gunicorn, one gthread worker of one thread, 127.0.0.1, keep-alive: one
``requests.Session`` per server, checked to use one connection throughout, an engine with
``pool_pre_ping``):

- ``flasker``: ``APIManager(add_all_models=True)``, ``GET /api/houses/?limit=N&depth=D``;
- ``bare``: the lower bound, flasker's own statements (recorded from a flasker project at
  start) run straight through psycopg on one connection, the text PostgreSQL writes sent
  in flasker's envelope: Flask and the driver, nothing else;
- ``lower``: the lower bound of the Python path, SQLAlchemy Core selects of the same
  columns and orjson, the cats selected by the keys of the houses read (one array
  parameter, as flasker's Python path does);
- ``smorest``: flask-smorest with marshmallow-sqlalchemy auto schemas (cats as keys, or
  nested), ``selectinload`` against N+1, smorest's pagination;
- ``restless``: Flask-Restless-NG (JSON:API; ``include=cats`` at depth 1), in a virtualenv of
  its own because it needs an older Flask and SQLAlchemy.

Every answer is checked equivalent (same houses, addresses and cats; flasker, bare and
lower byte for byte), and each server reports its SQL statements per request. Rounds
alternate between servers so that drift on the machine hits all; the median of each is
kept. Targets: flasker within 1.3 times the psycopg bare view (1.10 at 100 houses), at
least 2 times faster than Core + orjson from 1,000 houses, at least 3 times faster than
Flask-Restless-NG and flask-smorest, and the same number of statements whatever the size.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import typing as t
import venv
from pathlib import Path

import requests
import sqlalchemy as sa

from .api.servers import Base, Cat, House

if t.TYPE_CHECKING:
    from .__main__ import Context

HERE = Path(__file__).parent
SERVERS = HERE / "api" / "servers.py"
IMPLS = ("flasker", "bare", "lower", "smorest", "restless")
RESTLESS_REQUIREMENTS = ["flask-restless-ng>=3", "psycopg[binary]>=3.1", "orjson", "gunicorn>=22"]
CATS_PER_HOUSE = 3


def create(url: str) -> None:
    """The benchmark's tables, of their own names (dropped first), empty."""
    engine = sa.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()


def seed(url: str, houses: int) -> None:
    """Exactly ``houses`` houses with 3 cats each: the whole collection that is then read.

    The tables are emptied (``TRUNCATE``: the same tables, so the running servers keep their
    statements) and analyzed after filling, as a live database has statistics.
    """
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE cats, houses"))
        connection.execute(sa.insert(House), [
            {"id": i, "address": f"{i} Cat Street"} for i in range(1, houses + 1)])
        connection.execute(sa.insert(Cat), [
            {"name": f"cat-{i:05d}-{j}", "house_id": i}
            for i in range(1, houses + 1) for j in range(CATS_PER_HOUSE)])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE houses, cats"))
    engine.dispose()


def drop(url: str) -> None:
    engine = sa.create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()


def restless_python(tmp: Path) -> Path:
    """A virtualenv with Flask-Restless-NG and the Flask/SQLAlchemy it wants."""
    folder = tmp / "restless-venv"
    python = folder / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(folder)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *RESTLESS_REQUIREMENTS], check=True, capture_output=True)
    return python


class Server:
    """One implementation's server process on 127.0.0.1."""

    def __init__(self, impl: str, python: Path, url: str, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.impl = impl
        self.log = tmp / f"{impl}.log"
        argv = [str(python), str(SERVERS), impl, str(self.port), url]
        if impl in ("flasker", "bare"):
            argv.append(str(tmp / f"{impl}-project"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASKER")}
        self.process = subprocess.Popen(argv, cwd=tmp, env=env, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.session = requests.Session()
        self.connections: set[str] = set()  # the client ports the server saw
        if impl == "restless":  # JSON:API refuses other media types
            self.session.headers["Accept"] = "application/vnd.api+json"
        deadline = time.monotonic() + 60
        while True:
            try:
                self.session.get(f"{self.base}/houses/", timeout=5)
                break
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The {impl} server did not start:\n"
                                       f"{self.log.read_text()[-3000:]}") from None
                time.sleep(0.2)

    def url(self, size: int, depth: int) -> str:
        if self.impl in ("flasker", "bare", "lower"):
            return f"{self.base}/houses/?limit={size}&depth={depth}"
        if self.impl == "smorest":
            return f"{self.base}/houses/{'deep/' if depth else ''}?page_size={size}"
        return f"{self.base}/houses?page[size]={size}" + ("&include=cats" if depth else "")

    def get(self, size: int, depth: int) -> tuple[float, requests.Response]:
        started = time.perf_counter()
        response = self.session.get(self.url(size, depth), timeout=120)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{self.impl}: {response.status_code} {response.text[:500]}")
        if "Content-Length" not in response.headers:
            raise RuntimeError(f"{self.impl}: no Content-Length, the answer was streamed.")
        self.connections.add(response.headers["X-Client-Port"])
        return elapsed, response

    def check_reused(self) -> None:
        """Every request went over one kept-alive connection, as production clients do."""
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


# -- equivalence ------------------------------------------------------------------------------


def canonical(impl: str, response: requests.Response, depth: int) -> list[t.Any]:
    """Houses as ``(id, address, cats)``, cats as names or ``(name, house_id)``, from any shape."""
    body = response.json()
    if impl == "restless":
        included = {(c["type"], c["id"]): c for c in body.get("included", [])}
        houses = []
        for house in body["data"]:
            keys = [c["id"] for c in house["relationships"]["cats"]["data"]]
            if depth:
                cats: list[t.Any] = sorted(
                    (k, int(included[("cats", k)]["attributes"].get("house_id", house["id"])))
                    for k in keys)
            else:
                cats = sorted(keys)
            houses.append((int(house["id"]), house["attributes"]["address"], cats))
        return houses
    items = body if impl == "smorest" else body["items"]
    houses = []
    for house in items:
        if depth:
            cats = sorted((c["name"], c["house_id"]) for c in house["cats"])
        else:
            cats = sorted(house["cats"])
        houses.append((house["id"], house["address"], cats))
    return houses


# -- the run ----------------------------------------------------------------------------------


def run(ctx: Context) -> list[dict[str, t.Any]]:
    sizes = (100, 1_000) if ctx.quick else (100, 1_000, 10_000)
    rounds = {100: 100, 1_000: 20, 10_000: 5} if not ctx.quick else {100: 20, 1_000: 3}
    create(ctx.pg_url)
    pythons = {impl: Path(sys.executable) for impl in IMPLS}
    pythons["restless"] = restless_python(ctx.tmp)
    servers: dict[str, Server] = {}
    try:
        for impl in IMPLS:
            servers[impl] = Server(impl, pythons[impl], ctx.pg_url, ctx.tmp)
        timings, statements = measure(servers, sizes, rounds, ctx.pg_url)
    finally:
        for server in servers.values():
            server.stop()
        drop(ctx.pg_url)
    return results(timings, statements, sizes)


def measure(servers: dict[str, Server], sizes: t.Sequence[int], rounds: dict[int, int], url: str
            ) -> tuple[dict[tuple[str, int, int], float], dict[tuple[str, int, int], int]]:
    """Each size as a whole collection: the tables hold exactly that many houses, all read."""
    timings: dict[tuple[str, int, int], float] = {}
    statements: dict[tuple[str, int, int], int] = {}
    for size in sizes:
        seed(url, size)
        for depth in (0, 1):
            expected = None
            samples: dict[str, list[float]] = {impl: [] for impl in servers}
            for impl, server in servers.items():  # warm up, check the answers
                _elapsed, response = server.get(size, depth)
                statements[(impl, size, depth)] = int(response.headers["X-Statements"])
                found = canonical(impl, response, depth)
                if len(found) != size:
                    raise AssertionError(f"{impl} gave {len(found)} houses, not {size}")
                if expected is None:
                    expected = found
                elif found != expected:
                    raise AssertionError(f"{impl} does not give the same houses and cats as"
                                         f" flasker (size {size}, depth {depth}).")
            body = servers["flasker"].get(size, depth)[1].content
            for peer in ("bare", "lower"):
                if body != servers[peer].get(size, depth)[1].content:
                    raise AssertionError(f"flasker and {peer} differ byte for byte.")
            for _round in range(rounds[size]):
                for impl, server in servers.items():
                    samples[impl].append(server.get(size, depth)[0])
            for impl in servers:
                timings[(impl, size, depth)] = statistics.median(samples[impl])
    for server in servers.values():
        server.check_reused()
    return timings, statements


def results(timings: dict[tuple[str, int, int], float],
            statements: dict[tuple[str, int, int], int], sizes: t.Sequence[int]
            ) -> list[dict[str, t.Any]]:
    rows: list[dict[str, t.Any]] = []
    for depth in (0, 1):
        for size in sizes:
            ms = {impl: timings[(impl, size, depth)] * 1000 for impl in IMPLS}
            label = f"api GET {size:,} houses, depth {depth}"
            rows.append({
                "name": f"{label}: flasker / psycopg bare", "value": ms["flasker"], "unit": "ms",
                "ratio": ms["flasker"] / ms["bare"],
                "target": "<= 1.10" if size <= 100 else "<= 1.3",
                "note": f"psycopg bare {ms['bare']:.1f} ms",
            })
            rows.append({
                "name": f"{label}: Core + orjson / flasker", "value": ms["lower"], "unit": "ms",
                "ratio": ms["lower"] / ms["flasker"],
                "target": ">= 2" if size >= 1_000 else "-",
                "note": f"Core + orjson {ms['lower']:.1f} ms, flasker {ms['flasker']:.1f} ms",
            })
            for peer, title in (("restless", "Flask-Restless-NG"), ("smorest", "flask-smorest")):
                rows.append({
                    "name": f"{label}: {title} / flasker", "value": ms[peer], "unit": "ms",
                    "ratio": ms[peer] / ms["flasker"], "target": ">= 3",
                    "note": f"{title} {ms[peer]:.1f} ms, flasker {ms['flasker']:.1f} ms",
                })
    for depth in (0, 1):
        counts = {impl: [statements[(impl, size, depth)] for size in sizes] for impl in IMPLS}
        rows.append({
            "name": f"api SQL statements per request, depth {depth}",
            "value": counts["flasker"][-1], "unit": "statements",
            "ratio": counts["flasker"][-1] / counts["flasker"][0], "target": "1 (constant)",
            "note": "; ".join(f"{impl} {'/'.join(map(str, c))}" for impl, c in counts.items())
            + f" (for {'/'.join(f'{s:,}' for s in sizes)} houses)",
        })
    return rows


def markdown(rows: t.Sequence[dict[str, t.Any]]) -> str:
    """The results as the Markdown table of benchmarks/README.md."""
    lines = ["| benchmark | value | ratio | target | note |", "| --- | ---: | ---: | --- | --- |"]
    for row in rows:
        value = f"{row['value']:.1f} {row['unit']}" if row["unit"] == "ms" else (
            f"{row['value']} {row['unit']}")
        lines.append(f"| {row['name']} | {value} | {row['ratio']:.2f} | {row['target']} |"
                     f" {row['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.bench_api [--quick]: this benchmark alone
    from benchmarks.__main__ import run_alone

    run_alone(run, markdown)
