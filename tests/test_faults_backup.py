"""``make backup`` and ``make restore FILE=...`` on the running stack: a round trip restores
every row of every table.

The targets are run as a user would, with the variables that point them at this test's
stack (its compose project, env file and a backup folder of its own), never at a
developer's.
"""

from __future__ import annotations

import json
import re
import time
import typing as t
from pathlib import Path

import pytest

from .conftest import ROOT
from .conftest_stack import Stack, run, stack_environ, stack_test

pytestmark = [pytest.mark.docker, pytest.mark.faults]

# Every table the database holds, each row as text, sorted: the whole content to compare.
SNAPSHOT = """
import json
import sqlalchemy as sa

with project.engine.connect() as connection:
    tables = sa.inspect(connection).get_table_names()
    content = {
        table: sorted(json.dumps([str(v) for v in row])
                      for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')))
        for table in tables
    }
print("SNAPSHOT", json.dumps(content, sort_keys=True))
"""

SEED = """
import datetime as dt
for n in range(40):
    house = House(name=f"house {n}")
    house.cats = [Cat(name=f"cat {n}.{k}") for k in range(n % 4)]
    db.add(house)
db.add(BeatRun(name="nightly", ran_at=dt.datetime(2025, 3, 1, tzinfo=dt.UTC), runs=7))
db.add_all(TaskReceipt(task_id=f"seeded-{n:04d}") for n in range(100))
db.commit()
"""

# After the backup: rows changed, deleted and added, in every table the seed wrote.
DAMAGE = """
import sqlalchemy as sa
db.execute(sa.delete(Cat).where(Cat.name.like("cat 1%")))
db.execute(sa.update(House).values(name=House.name + " (renamed)").where(House.id % 3 == 0))
db.execute(sa.delete(House).where(House.name.like("house 2%")))
db.add(House(name="after the backup"))
db.execute(sa.delete(BeatRun))
db.execute(sa.delete(TaskReceipt).where(TaskReceipt.task_id < "seeded-0050"))
db.add(TaskReceipt(task_id="after-the-backup"))
db.commit()
"""


def snapshot(stack: Stack) -> dict[str, list[str]]:
    out = stack.shell(SNAPSHOT).stdout
    line = next(x for x in out.splitlines() if x.startswith("SNAPSHOT "))
    return t.cast(dict[str, list[str]], json.loads(line.removeprefix("SNAPSHOT ")))


def make(stack: Stack, target: str, *variables: str,
         check: bool = True) -> t.Any:
    """``make <target>`` aimed at the test's stack: its project, env file, backup folder."""
    compose = (f"docker compose --project-name {stack.name} --project-directory {ROOT}"
               f" --file {ROOT / 'compose.yaml'}")
    return run(["make", "-s", target, f"COMPOSE={compose}", f"ENV_FILE={stack.env_file}",
                *variables], env=stack_environ(), timeout=300, check=check)


def running(stack: Stack) -> set[str]:
    return {c["Service"] for c in stack.containers() if c["State"] == "running"}


def test_make_help_lists_backup_and_restore() -> None:
    out = run(["make", "-s", "help"]).stdout
    assert re.search(r"^  make backup +Dump the stack's database to backups/", out, re.M), out
    assert re.search(r"^  make restore +Restore the database from a dump: make restore FILE=",
                     out, re.M), out


@pytest.mark.docker
@stack_test
def test_restore_wants_a_file_that_exists(stack: Stack, tmp_path: Path) -> None:
    missing = make(stack, "restore", check=False)
    assert missing.returncode == 2
    assert ("Name the dump to restore: make restore FILE=backups/<project>-<time>.dump"
            " (written by 'make backup').") in missing.stderr
    absent = make(stack, "restore", f"FILE={tmp_path / 'nope.dump'}", check=False)
    assert absent.returncode == 2
    assert f"No file '{tmp_path / 'nope.dump'}': name a dump 'make backup' wrote" in absent.stderr


@pytest.mark.docker
@stack_test
def test_a_backup_and_a_restore_bring_back_every_row(stack: Stack, tmp_path: Path) -> None:
    # Beat writes its periodic run into the database: stopped, so that the content stays
    # still; web and worker keep running, and 'make restore' stops and starts them again.
    stack.compose("stop", "beat")
    stack.shell(SEED)
    original = snapshot(stack)
    assert len(original["houses"]) == 40 and len(original["cats"]) == 60
    assert len(original["task_receipts"]) == 100 and original["alembic_version"]

    backups = tmp_path / "backups"
    started = time.monotonic()
    backup = make(stack, "backup", f"BACKUP_DIR={backups}")
    took = time.monotonic() - started
    [dump] = backups.iterdir()
    assert re.fullmatch(rf"{stack.name}-\d{{8}}T\d{{6}}Z\.dump", dump.name), dump.name
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    assert backup.stdout.strip() == (
        f"Backed up the database to {dump} ({dump.stat().st_size} bytes).")

    stack.shell(DAMAGE)
    damaged = snapshot(stack)
    assert damaged != original and damaged["beat_runs"] == []

    before = running(stack)
    assert {"web", "worker"} <= before and "beat" not in before
    started = time.monotonic()
    restore = make(stack, "restore", f"FILE={dump}")
    restore_took = time.monotonic() - started
    stopping = re.search(r"^Stopping (.*) while the database is restored\.$", restore.stdout, re.M)
    assert stopping and set(stopping.group(1).split()) == {"web", "worker"}, restore.stdout
    assert f"Restored the database from {dump}." in restore.stdout
    assert running(stack) == before  # what it stopped runs again; beat stays stopped

    assert snapshot(stack) == original
    print(f"\nbackup of {sum(map(len, original.values()))} rows in {len(original)} tables:"
          f" {dump.stat().st_size} bytes in {took:.1f} s (make backup); make restore"
          f" {restore_took:.1f} s, stopping and starting web and worker included")


@pytest.mark.docker
@stack_test
def test_a_dump_cut_short_is_not_restored_and_the_database_stays_as_it_was(
    stack: Stack, tmp_path: Path,
) -> None:
    """pg_restore runs in one transaction: its DROPs are rolled back with the rest."""
    stack.compose("stop", "beat")
    make(stack, "backup", f"BACKUP_DIR={tmp_path}")
    [dump] = tmp_path.iterdir()
    data = dump.read_bytes()
    cut = tmp_path / "cut.dump"
    # A copy interrupted on its way: pg_restore fails in the last table's rows, after it
    # has dropped every table and loaded the others.
    cut.write_bytes(data[:-100])
    stack.shell("db.add(House(name='after the last backup'))\ndb.commit()\n")
    before = snapshot(stack)

    failed = make(stack, "restore", f"FILE={cut}", check=False)
    assert failed.returncode != 0
    assert f"Restoring {cut} failed (pg_restore exited" in failed.stderr
    assert "the database is as it was before." in failed.stderr
    assert {"web", "worker"} <= running(stack)
    assert snapshot(stack) == before
