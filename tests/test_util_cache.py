"""``stored_property`` and ``Cacheable``: in memory, in the row, and in Redis."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from flasker import ConfigError, Project
from flasker.caching import init_cache
from flasker.util import Cacheable, stored_property
from flasker.util.cache import StoredProperty

from .conftest import unique_package

# -- stored_property on plain objects ----------------------------------------------------------


class Counter:
    def __init__(self, result: t.Any = 42) -> None:
        self.result = result
        self.calls = 0

    @stored_property
    def value(self) -> t.Any:
        """The result, counted."""
        self.calls += 1
        return self.result

    @stored_property(expiration=0.3)
    def fresh(self) -> int:
        self.calls += 1
        return self.calls

    @stored_property(expiration=dt.timedelta(hours=1))
    def hourly(self) -> int:
        self.calls += 1
        return self.calls


def test_computed_once_per_instance() -> None:
    a, b = Counter(1), Counter(2)
    assert (a.value, a.value, b.value, b.value) == (1, 1, 2, 2)
    assert (a.calls, b.calls) == (1, 1)
    assert isinstance(Counter.value, StoredProperty)
    assert Counter.value.__doc__ == "The result, counted."


@pytest.mark.parametrize("falsy", [None, 0, 0.0, "", False, [], {}])
def test_falsy_values_are_stored(falsy: t.Any) -> None:
    counter = Counter(falsy)
    assert counter.value == falsy
    assert counter.value == falsy
    assert counter.calls == 1


def test_expiration() -> None:
    counter = Counter()
    assert counter.fresh == 1
    assert counter.fresh == 1
    time.sleep(0.35)
    assert counter.fresh == 2
    assert counter.fresh == 2
    assert counter.hourly == 3
    assert counter.hourly == 3


def test_set_and_delete() -> None:
    counter = Counter()
    counter.value = "given"
    assert counter.value == "given"
    assert counter.calls == 0
    del counter.value
    assert counter.value == 42
    assert counter.calls == 1
    del counter.value
    del counter.value  # forgetting twice is harmless
    assert counter.value == 42
    assert counter.calls == 2


@pytest.mark.parametrize(("expiration", "error", "message"), [
    (0, ValueError, "must be positive, not 0: use None"),
    (-5, ValueError, "must be positive"),
    (dt.timedelta(0), ValueError, "must be positive"),
    ("60", TypeError, "must be a number of seconds or a timedelta, not str '60'"),
    (True, TypeError, "not bool True"),
])
def test_bad_expiration_is_refused(expiration: t.Any, error: type[Exception],
                                   message: str) -> None:
    with pytest.raises(error, match=message):
        stored_property(expiration=expiration)(lambda self: 1)


# -- Cacheable models --------------------------------------------------------------------------

MODELS = """
import datetime as dt

from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model
from flasker.util import Cacheable, stored_property

CALLS = []


class Cottage(Cacheable, Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    rooms: Mapped[int]

    @stored_property
    def area(self) -> int:
        CALLS.append("area")
        return self.rooms * 20

    @stored_property(expiration=60)
    def label(self) -> str:
        CALLS.append("label")
        return f"{self.rooms} rooms"

    @stored_property
    def nothing(self) -> None:
        CALLS.append("nothing")
        return None

    @stored_property
    def built(self) -> dt.date:
        CALLS.append("built")
        return dt.date(2020, 1, 2)

    @stored_property
    def broken(self) -> object:
        return object() if self.rooms == 13 else "fine"
"""


def cottage_project(make_project: t.Callable[..., Project], url: str, extra: str = "") -> Project:
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Cache\nMODULES = {package}.models\nDB_URL = {url}\n{extra}",
        files={f"{package}/__init__.py": "", f"{package}/models.py": MODELS},
    )
    models = project.models()
    sa_table = models["Cottage"].__table__
    sa_table.metadata.create_all(project.engine, tables=[sa_table])
    return project


def _module(project: Project) -> t.Any:
    return importlib.import_module(project.models()["Cottage"].__module__)


def test_cacheable_persists_in_the_row(make_project: t.Callable[..., Project],
                                       db_url: str) -> None:
    project = cottage_project(make_project, db_url)
    cottage_cls = project.models()["Cottage"]
    calls = _module(project).CALLS
    with project.app.app_context():
        cottage = cottage_cls(rooms=3)
        assert cottage.area == 60  # before the first flush: kept on the instance
        project.db.add(cottage)
        project.db.commit()
        assert (cottage.area, cottage.nothing, cottage.nothing) == (60, None, None)
        assert cottage.built == "2020-01-02"  # kept as JSON, from the first access on
        project.db.commit()
    assert calls == ["area", "nothing", "built"]

    with project.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT _cache FROM cottages")).scalar_one()
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored["area"]["value"] == 60
    assert stored["nothing"]["value"] is None
    assert stored["area"]["expires"] is None

    with project.app.app_context():  # a new session: values come from the database
        cottage = project.db.get_one(cottage_cls, 1)
        assert (cottage.area, cottage.nothing, cottage.built) == (60, None, "2020-01-02")
        assert calls == ["area", "nothing", "built"]
        view = cottage.view_cache()
        assert sorted(view) == ["area", "built", "nothing"]
        assert view["area"].value == 60
        assert view["area"].expires_at is None
        assert abs(view["area"].updated_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def _cottage(project: Project, rooms: int = 2) -> t.Any:
    cottage = project.models()["Cottage"](rooms=rooms)
    project.db.add(cottage)
    project.db.flush()
    return cottage


def test_refresh_cache_and_expiration(make_project: t.Callable[..., Project],
                                      db_url: str) -> None:
    project = cottage_project(make_project, db_url)
    calls = _module(project).CALLS
    with project.app.app_context():
        cottage = _cottage(project)
        assert cottage.label == "2 rooms"
        entry = cottage.view_cache()["label"]
        assert entry.expires is not None and 59 < entry.expires - entry.updated <= 60
        cottage.rooms = 5
        assert cottage.label == "2 rooms"  # still stored
        assert cottage.refresh_cache("label") == {"label": "5 rooms"}
        assert cottage.label == "5 rooms"

        values = cottage.refresh_cache(["area", "label"], expiration=0.3)
        assert values == {"area": 100, "label": "5 rooms"}
        assert set(cottage.view_cache()) == {"area", "label"}
        time.sleep(0.35)
        assert cottage.view_cache() == {}  # expired entries are not shown
        calls.clear()
        assert cottage.area == 100
        assert calls == ["area"]  # expired: computed again

        cottage.rooms = 13
        with pytest.raises(TypeError, match="'Cottage.broken' returned a value that cannot be"
                                            " kept as JSON: Object of type 'builtins.object'"):
            cottage.refresh_cache()
        with pytest.raises(ValueError, match="'Cottage' has no stored property 'size'. Its stored"
                                             " properties: 'area', 'label', 'nothing', 'built',"
                                             " 'broken'."):
            cottage.refresh_cache(["area", "size"])
        with pytest.raises(ValueError, match="must be positive"):
            cottage.refresh_cache("area", expiration=-1)


def test_refresh_all_drops_entries_of_removed_properties(
        make_project: t.Callable[..., Project], tmp_path: Path) -> None:
    project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}")
    with project.app.app_context():
        cottage = _cottage(project)
        # Left by an older version of the class, and by hand.
        cottage._cache = {"gone": {"value": 1, "updated": time.time(), "expires": None},
                          "junk": "not an entry"}
        assert cottage.view_cache() == {}
        values = cottage.refresh_cache()
        assert values == {"area": 40, "label": "2 rooms", "nothing": None,
                          "built": "2020-01-02", "broken": "fine"}
        assert sorted(cottage._cache) == sorted(values)


def test_delete_and_assign_on_a_cacheable(make_project: t.Callable[..., Project],
                                          tmp_path: Path) -> None:
    project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}")
    calls = _module(project).CALLS
    with project.app.app_context():
        cottage = _cottage(project, rooms=1)
        cottage.area = 7
        assert cottage.area == 7
        assert calls == []
        del cottage.area
        assert "area" not in cottage.view_cache()
        assert cottage.area == 20
        assert calls == ["area"]


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix(redis_url: str) -> t.Iterator[str]:
    prefix = f"test-cache-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_cacheable_in_redis(make_project: t.Callable[..., Project], tmp_path: Path,
                            redis_url: str, redis_prefix: str) -> None:
    project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}",
                              f"[CACHE]\nURL = {redis_url}\nPREFIX = {redis_prefix}\n")
    cottage_cls = project.models()["Cottage"]
    calls = _module(project).CALLS
    with project.app.app_context():
        unsaved = cottage_cls(rooms=1)
        with pytest.raises(RuntimeError, match="before it has a primary key: add it to the"
                                               " session and flush"):
            _ = unsaved.area
        cottage = _cottage(project, rooms=4)
        assert (cottage.area, cottage.area, cottage.nothing) == (80, 80, None)
        assert cottage.label == "4 rooms"
        project.db.commit()
    assert calls == ["area", "nothing", "label"]

    client = redis.Redis.from_url(redis_url)
    stored = client.hgetall(f"{redis_prefix}cottages:1")
    assert sorted(stored) == [b"area", b"label", b"nothing"]
    with project.engine.connect() as connection:  # the column is not used
        assert connection.execute(sa.text("SELECT _cache FROM cottages")).scalar_one() is None

    with project.app.app_context():
        cottage = project.db.get_one(cottage_cls, 1)
        assert (cottage.area, cottage.nothing) == (80, None)
        assert calls == ["area", "nothing", "label"]
        assert sorted(cottage.view_cache()) == ["area", "label", "nothing"]
        cottage.rooms = 6
        assert cottage.refresh_cache(["area"], expiration=0.3) == {"area": 120}
        time.sleep(0.35)
        assert sorted(cottage.view_cache()) == ["label", "nothing"]
        del cottage.label
        assert sorted(client.hkeys(f"{redis_prefix}cottages:1")) == [b"area", b"nothing"]
    client.close()


def test_default_redis_prefix_names_the_project(make_project: t.Callable[..., Project],
                                                tmp_path: Path, redis_url: str) -> None:
    project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}",
                              f"[CACHE]\nURL = {redis_url}\n")
    settings = init_cache(project.app, project.config)
    assert settings.prefix == "flasker:cache:cache:"
    assert settings.url == redis_url


@pytest.mark.parametrize(("section", "message"), [
    ("[CACHE]\nURL = memcached://localhost\n",
     r"Config 'CACHE.URL' has value 'memcached://localhost' \(.*default.cfg:6\). Expected a"
     r" redis://, rediss:// or unix:// URL, or no value to keep the cache in the database."),
    ("[CACHE]\nURLS = redis://localhost\n",
     r"Unknown key 'URLS' in section \[CACHE\] \(.*default.cfg:6\). Did you mean 'URL'\?"),
])
def test_bad_cache_config_is_a_clear_error(make_project: t.Callable[..., Project],
                                           tmp_path: Path, section: str, message: str) -> None:
    # At start-up once the project reads [CACHE] there (init_cache), else at first use.
    with pytest.raises(ConfigError, match=message):
        project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}", section)
        with project.app.app_context():
            _ = _cottage(project).area


def test_cacheable_outside_a_project_uses_the_column(make_project: t.Callable[..., Project],
                                                     tmp_path: Path, redis_url: str) -> None:
    project = cottage_project(make_project, f"sqlite:///{tmp_path / 'c.sqlite'}",
                              f"[CACHE]\nURL = {redis_url}\n")
    cottage = project.models()["Cottage"](rooms=2)
    assert cottage.area == 40
    assert cottage._cache["area"]["value"] == 40
    assert isinstance(cottage, Cacheable)
