"""Run every ``benchmarks/bench_*.py`` and print its results as ratios against its peers.

Each module has ``run(ctx) -> list[dict]``; a result is ``{"name", "value", "unit",
"ratio", "target", "note"}``. ``ctx`` gives a PostgreSQL and a Redis URL
(testcontainers, or $FLASKER_TEST_DATABASE_URL / $FLASKER_TEST_REDIS_URL), a
temporary folder and ``quick`` for a smaller smoke run.

    python -m benchmarks [--quick] [-k NAME] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass
class Context:
    pg_url: str
    redis_url: str
    tmp: Path
    quick: bool


@contextlib.contextmanager
def servers() -> t.Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        pg_url = os.environ.get("FLASKER_TEST_DATABASE_URL")
        if not pg_url:
            from testcontainers.community.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer(
                os.environ.get("POSTGRES_IMAGE", "postgres:17"), driver="psycopg"))
            pg_url = pg.get_connection_url()
        redis_url = os.environ.get("FLASKER_TEST_REDIS_URL")
        if not redis_url:
            from testcontainers.community.redis import RedisContainer

            redis = stack.enter_context(RedisContainer(os.environ.get("REDIS_IMAGE", "redis:7")))
            redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        yield pg_url, redis_url


def run_alone(run: t.Callable[[Context], list[dict[str, t.Any]]],
              markdown: t.Callable[[list[dict[str, t.Any]]], str]) -> None:
    """``python -m benchmarks.bench_x [--quick]``: one module alone, its Markdown table printed."""
    with servers() as (pg, redis), tempfile.TemporaryDirectory() as folder:
        found = run(Context(pg_url=pg, redis_url=redis, tmp=Path(folder),
                            quick="--quick" in sys.argv))
    print(markdown(found))


def modules(selected: str | None) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [n for n in names if not selected or selected in n]


def show(results: list[dict[str, t.Any]]) -> None:
    header = f"{'benchmark':<58} {'value':>12} {'unit':<10} {'ratio':>7}  {'target':<10} note"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        print(f"{r['name']:<58} {r['value']:>12.4g} {r['unit']:<10} {ratio:>7}"
              f"  {r.get('target') or '':<10} {r.get('note', '')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("-k", dest="select", help="only the modules whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    results: list[dict[str, t.Any]] = []
    failed = False
    with servers() as (pg_url, redis_url), tempfile.TemporaryDirectory() as tmp:
        for name in modules(args.select):
            module = importlib.import_module(f"benchmarks.{name}")
            ctx = Context(pg_url=pg_url, redis_url=redis_url, tmp=Path(tmp) / name,
                          quick=args.quick)
            ctx.tmp.mkdir()
            started = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                found = module.run(ctx)
            except Exception as e:  # report the others' results all the same
                failed = True
                print(f"   {name} failed: {type(e).__name__}: {e}", flush=True)
                continue
            show(found)
            print(f"   ({time.perf_counter() - started:.0f} s)\n", flush=True)
            results.extend(found)
    print("== all results")
    show(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
