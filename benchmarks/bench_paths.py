"""The API's two read paths on PostgreSQL, side by side: JSON written by the database, or by Python.

One flasker project, in-process (Flask's test client: the same app and connection for both,
no HTTP), reads the same pages by each path (``Endpoints.sql_json`` on and off) and checks
their bodies byte for byte. The pages are those the SQL path has learnt to write beyond a
plain one-to-many:

- ``many-to-one``: pets with their owner at depth 1 (ten pets per owner: each owner in full
  at its first pet of the page, then as its key);
- ``many-to-many``: pets with their tags at depth 1 (3 tags each, 100 tags in all: each tag
  in full at its first place in the page);
- ``keys, unindexed``: every tag with the keys of its pets, on an association table whose
  key begins with the pet's column (the tag's column has no index of its own).

The ratio is the Python path's time over the SQL path's: above 1, the SQL path is faster.

    python -m benchmarks -k paths [--quick]
"""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa

from flasker.ext.api.views import Endpoints

from .api.servers import flasker_project

if t.TYPE_CHECKING:
    from .__main__ import Context

MODELS = '''
from flasker import Model, current_project
from flasker.ext.api import APIManager
from sqlalchemy import Column, ForeignKey, Integer, Unicode
from sqlalchemy.orm import relationship

current_project.register_manager(APIManager(add_all_models=True), config_section="API")


class Owner(Model):
    __tablename__ = "paths_owners"
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(64))


class Pet(Model):
    __tablename__ = "paths_pets"
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(64))
    owner_id = Column(ForeignKey("paths_owners.id"), index=True)
    owner = relationship("Owner", backref="pets")
    tags = relationship("Tag", secondary="paths_pet_tags", backref="pets", order_by="Tag.id")


class PetTag(Model):
    __tablename__ = "paths_pet_tags"
    pet_id = Column(ForeignKey("paths_pets.id"), primary_key=True)
    tag_id = Column(ForeignKey("paths_tags.id"), primary_key=True)


class Tag(Model):
    __tablename__ = "paths_tags"
    id = Column(Integer, primary_key=True)
    label = Column(Unicode(64))
'''

TAGS = 100
PETS_PER_OWNER = 10
TAGS_PER_PET = 3
ROUNDS = 5


def _seed(engine: sa.Engine, pets: int) -> None:
    statements = [
        "TRUNCATE paths_pet_tags, paths_pets, paths_owners, paths_tags",
        f"INSERT INTO paths_tags SELECT i, 'tag ' || i FROM generate_series(1, {TAGS}) i",
        f"INSERT INTO paths_owners SELECT i, 'owner ' || i"
        f" FROM generate_series(1, {pets // PETS_PER_OWNER}) i",
        # Owners spread over the page: a pet's owner is met again ten times further on.
        f"INSERT INTO paths_pets SELECT i, 'pet ' || i, 1 + i % {pets // PETS_PER_OWNER}"
        f" FROM generate_series(1, {pets}) i",
        f"INSERT INTO paths_pet_tags SELECT DISTINCT i, 1 + (i * 7 + j * 13) % {TAGS}"
        f" FROM generate_series(1, {pets}) i, generate_series(0, {TAGS_PER_PET - 1}) j",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE paths_pet_tags, paths_pets, paths_owners, paths_tags"))


def _time(client: t.Any, url: str, sql_json: bool, requests: int) -> tuple[float, bytes]:
    """The best time of a request over :data:`ROUNDS` rounds, and the body it gave."""
    Endpoints.sql_json = sql_json
    try:
        response = client.get(url)
        assert response.status_code == 200, response.get_data(as_text=True)
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(requests):
                client.get(url)
            best = min(best, (time.perf_counter() - started) / requests)
        return best, response.data
    finally:
        Endpoints.sql_json = True


def run(ctx: Context) -> list[dict[str, t.Any]]:
    project = flasker_project(ctx.pg_url, str(ctx.tmp / "paths-project"), "bench_paths_app",
                              MODELS)
    results: list[dict[str, t.Any]] = []
    try:
        project.metadata.create_all(project.engine)
        client = project.app.test_client()
        for pets in (1_000,) if ctx.quick else (1_000, 10_000):
            _seed(project.engine, pets)
            pages = {
                "many-to-one": f"/api/paths_pets/?limit={pets}&depth=1&fields=name,owner",
                "many-to-many": f"/api/paths_pets/?limit={pets}&depth=1&fields=name,tags"
                                "&fields[paths_tags]=label",
                "keys, unindexed": f"/api/paths_tags/?limit={TAGS}",
            }
            requests = max(3, 30_000 // pets)
            for label, url in pages.items():
                sql, sql_body = _time(client, url, True, requests)
                python, python_body = _time(client, url, False, requests)
                assert sql_body == python_body, f"the two paths differ for {url}"
                results.append(
                    {"name": f"paths: {label}, {pets:,} pets, Python / SQL", "value": python / sql,
                     "unit": "x", "ratio": python / sql, "target": ">= 1",
                     "note": f"SQL {sql * 1e3:.2f} ms, Python {python * 1e3:.2f} ms"
                             f" (best of {ROUNDS} x {requests})"})
    finally:
        project.metadata.drop_all(project.engine)
        project.close()
    return results


def markdown(results: t.Sequence[dict[str, t.Any]]) -> str:
    lines = ["| page | SQL path faster by | times |", "|---|---:|---|"]
    lines += [f"| {r['name'].removeprefix('paths: ').removesuffix(', Python / SQL')}"
              f" | {r['value']:.2f} | {r['note']} |" for r in results]
    return "\n".join(lines)


if __name__ == "__main__":
    from .__main__ import run_alone

    run_alone(run, markdown)
