"""Stored properties, and ``Cacheable``: a model mixin whose stored properties persist.

``@stored_property`` computes a value on first access and stores it for the instance
(``None``, ``0`` and ``False`` included), optionally for a limited time. Unlike
``functools.cached_property`` the value can expire, and on a :class:`Cacheable` model it
outlives the instance: it is kept in the row itself (the JSON column ``_cache``, saved
when the session commits) or, when ``[CACHE] URL`` names a Redis server, in one Redis
hash per row.
"""

from __future__ import annotations

import datetime as dt
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Mapped, mapped_column

from .json import dumps, loads

if t.TYPE_CHECKING:
    from redis import Redis

T = t.TypeVar("T")

Expiration = int | float | dt.timedelta | None

#: The key of the app's :class:`CacheSettings` in ``app.extensions``.
EXTENSION_KEY = "flasker_cache"


def _seconds(expiration: Expiration, what: str) -> float | None:
    """An expiration as seconds (``None``: never), refusing zero and negative values."""
    if expiration is None:
        return None
    if isinstance(expiration, dt.timedelta):
        seconds = expiration.total_seconds()
    elif isinstance(expiration, (int, float)) and not isinstance(expiration, bool):
        seconds = float(expiration)
    else:
        raise TypeError(
            f"The expiration of {what} must be a number of seconds or a timedelta,"
            f" not {type(expiration).__name__} {expiration!r}."
        )
    if seconds <= 0:
        raise ValueError(
            f"The expiration of {what} must be positive, not {expiration!r}:"
            " use None for values that never expire."
        )
    return seconds


@dataclass(frozen=True)
class CacheEntry:
    """One stored value, when it was computed and when it expires (``None``: never)."""

    value: t.Any
    updated: float
    expires: float | None = None

    @property
    def expired(self) -> bool:
        return self.expires is not None and time.time() >= self.expires

    @property
    def updated_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.updated, tz=dt.UTC)

    @property
    def expires_at(self) -> dt.datetime | None:
        if self.expires is None:
            return None
        return dt.datetime.fromtimestamp(self.expires, tz=dt.UTC)

    def to_json(self) -> dict[str, t.Any]:
        return {"value": self.value, "updated": self.updated, "expires": self.expires}

    @classmethod
    def from_json(cls, data: t.Any) -> CacheEntry | None:
        """The entry stored as ``data``, or ``None`` when it is not one (an older format)."""
        if not isinstance(data, dict) or "value" not in data or "updated" not in data:
            return None
        return cls(data["value"], float(data["updated"]), data.get("expires"))


# -- where entries live -----------------------------------------------------------------------


class Store(t.Protocol):
    """Where the stored values of one instance are kept."""

    def get(self, name: str) -> CacheEntry | None: ...

    def set(self, name: str, entry: CacheEntry) -> None: ...

    def delete(self, names: t.Collection[str]) -> None: ...

    def all(self) -> dict[str, CacheEntry]: ...

    def keys(self) -> list[str]: ...


class MemoryStore:
    """Entries in the instance's ``__dict__``: the store of plain objects."""

    ATTRIBUTE = "_flasker_stored"

    def __init__(self, instance: t.Any) -> None:
        self.entries: dict[str, CacheEntry] = instance.__dict__.setdefault(self.ATTRIBUTE, {})

    def get(self, name: str) -> CacheEntry | None:
        return self.entries.get(name)

    def set(self, name: str, entry: CacheEntry) -> None:
        self.entries[name] = entry

    def delete(self, names: t.Collection[str]) -> None:
        for name in names:
            self.entries.pop(name, None)

    def all(self) -> dict[str, CacheEntry]:
        return dict(self.entries)

    def keys(self) -> list[str]:
        return list(self.entries)


class ColumnStore:
    """Entries in the ``_cache`` JSON column of a :class:`Cacheable` row."""

    def __init__(self, instance: Cacheable) -> None:
        self.instance = instance

    def _data(self) -> dict[str, t.Any]:
        return dict(self.instance._cache or {})

    def get(self, name: str) -> CacheEntry | None:
        return CacheEntry.from_json(self._data().get(name))

    def set(self, name: str, entry: CacheEntry) -> None:
        # A new dict, so that SQLAlchemy sees the column change.
        self.instance._cache = {**self._data(), name: entry.to_json()}

    def delete(self, names: t.Collection[str]) -> None:
        data = self._data()
        if any(name in data for name in names):
            self.instance._cache = {k: v for k, v in data.items() if k not in names} or None

    def all(self) -> dict[str, CacheEntry]:
        entries = {name: CacheEntry.from_json(raw) for name, raw in self._data().items()}
        return {name: entry for name, entry in entries.items() if entry is not None}

    def keys(self) -> list[str]:
        return list(self._data())


class RedisStore:
    """Entries in one Redis hash per row: ``<prefix><table>:<primary key>``."""

    def __init__(self, instance: Cacheable, client: Redis, prefix: str) -> None:
        identity = sa.inspect(instance).identity
        if not identity or any(v is None for v in identity):
            raise RuntimeError(
                f"Cannot keep the cache of {instance!r} in Redis before it has a primary key:"
                " add it to the session and flush (or commit) first."
            )
        key = ":".join(str(v) for v in identity)
        self.client = client
        self.key = f"{prefix}{instance.__table__.name}:{key}"

    def get(self, name: str) -> CacheEntry | None:
        raw = self.client.hget(self.key, name)
        return None if raw is None else CacheEntry.from_json(loads(raw))

    def set(self, name: str, entry: CacheEntry) -> None:
        self.client.hset(self.key, name, dumps(entry.to_json()))

    def delete(self, names: t.Collection[str]) -> None:
        if names:
            self.client.hdel(self.key, *names)

    def all(self) -> dict[str, CacheEntry]:
        raw = t.cast("dict[bytes, bytes]", self.client.hgetall(self.key))
        entries = {k.decode(): CacheEntry.from_json(loads(v)) for k, v in raw.items()}
        return {name: entry for name, entry in entries.items() if entry is not None}

    def keys(self) -> list[str]:
        return [k.decode() for k in t.cast("list[bytes]", self.client.hkeys(self.key))]


def store_for(instance: t.Any) -> Store:
    if isinstance(instance, Cacheable):
        return instance._cache_store()
    return MemoryStore(instance)


# -- the descriptor ---------------------------------------------------------------------------


class StoredProperty(t.Generic[T]):
    """A property computed on first access and kept (see :func:`stored_property`)."""

    def __init__(self, func: t.Callable[[t.Any], T], expiration: Expiration = None) -> None:
        self.func = func
        self.name = func.__name__
        self.expiration = _seconds(expiration, f"the stored property '{self.name}'")
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type[t.Any], name: str) -> None:
        self.name = name

    @t.overload
    def __get__(self, instance: None, owner: type[t.Any] | None = None) -> StoredProperty[T]: ...

    @t.overload
    def __get__(self, instance: object, owner: type[t.Any] | None = None) -> T: ...

    def __get__(self, instance: object | None,
                owner: type[t.Any] | None = None) -> T | StoredProperty[T]:
        if instance is None:
            return self
        store = store_for(instance)
        entry = store.get(self.name)
        if entry is not None and not entry.expired:
            return t.cast(T, entry.value)
        return self.refresh(instance, store=store)

    def __set__(self, instance: object, value: T) -> None:
        """Store ``value`` as if it had been computed now."""
        self._store(instance, store_for(instance), value, self.expiration)

    def __delete__(self, instance: object) -> None:
        """Forget the stored value: the next access computes it again."""
        store_for(instance).delete([self.name])

    def refresh(self, instance: object, expiration: Expiration = None,
                store: Store | None = None) -> T:
        """Compute the value now and store it (for ``expiration``, else the property's)."""
        seconds = self.expiration if expiration is None else _seconds(
            expiration, f"the stored property '{self.name}'"
        )
        return self._store(instance, store or store_for(instance), self.func(instance), seconds)

    def _store(self, instance: object, store: Store, value: T, seconds: float | None) -> T:
        if not isinstance(store, MemoryStore):
            # Kept as JSON: hand back what a later read gives, from the first access on.
            try:
                value = loads(dumps(value))
            except TypeError as e:
                raise TypeError(
                    f"The stored property '{type(instance).__name__}.{self.name}' returned a"
                    f" value that cannot be kept as JSON: {e}"
                ) from None
        now = time.time()
        store.set(self.name, CacheEntry(value, now, None if seconds is None else now + seconds))
        return value


@t.overload
def stored_property(func: t.Callable[[t.Any], T], /) -> StoredProperty[T]: ...


@t.overload
def stored_property(
    *, expiration: Expiration = None
) -> t.Callable[[t.Callable[[t.Any], T]], StoredProperty[T]]: ...


def stored_property(
    func: t.Callable[[t.Any], T] | None = None, /, *, expiration: Expiration = None
) -> StoredProperty[T] | t.Callable[[t.Callable[[t.Any], T]], StoredProperty[T]]:
    """A property computed on first access and stored per instance.

    Falsy values (``None``, ``0``, ``""``, ``False``) are stored like any other.
    ``expiration`` (seconds or a ``timedelta``) makes the value computed again once
    it is that old. Assigning to the property stores the assigned value; ``del``
    forgets it.

    ::

        class Report:
            @stored_property
            def total(self) -> int: ...

            @stored_property(expiration=60)
            def rates(self) -> dict[str, float]: ...
    """
    if func is not None:
        return StoredProperty(func)

    def decorate(f: t.Callable[[t.Any], T]) -> StoredProperty[T]:
        return StoredProperty(f, expiration)

    return decorate


# -- the model mixin --------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheSettings:
    """The ``[CACHE]`` section of one project, resolved once."""

    url: str | None
    prefix: str
    _clients: dict[str, Redis]

    def client(self) -> Redis:
        """The Redis client, created on first use (it connects on first command)."""
        if self.url is None:
            raise RuntimeError("The project keeps its cache in the database, not in Redis.")
        if self.url not in self._clients:
            from redis import Redis  # noqa: PLC0415 (only projects that use it pay for it)

            self._clients[self.url] = Redis.from_url(self.url)
        return self._clients[self.url]


def _current_settings() -> CacheSettings | None:
    """The cache settings of the app whose context is pushed (the project's ``[CACHE]``)."""
    if not has_app_context():
        return None
    return t.cast("CacheSettings | None", current_app.extensions.get(EXTENSION_KEY))


class Cacheable:
    """A model mixin whose stored properties persist between sessions and processes.

    Values live in the row's ``_cache`` JSON column (written when the session
    commits) or, when ``[CACHE] URL`` names a Redis server, in Redis. As they are
    kept as JSON, a property gives back JSON types (a datetime as its ISO string).
    Outside an app context the column is used.

    ::

        class House(Cacheable, Model):
            id: Mapped[int] = mapped_column(primary_key=True)

            @stored_property(expiration=3600)
            def valuation(self) -> float: ...
    """

    _cache: Mapped[dict[str, t.Any] | None] = mapped_column(
        "_cache", sa.JSON(none_as_null=True), nullable=True, default=None
    )

    if t.TYPE_CHECKING:
        __table__: sa.Table

    def _cache_store(self) -> Store:
        settings = _current_settings()
        if settings is None or settings.url is None:
            return ColumnStore(self)
        return RedisStore(self, settings.client(), settings.prefix)

    @classmethod
    def stored_properties(cls) -> dict[str, StoredProperty[t.Any]]:
        """The class's stored properties, by name."""
        found: dict[str, StoredProperty[t.Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, StoredProperty):
                    found[name] = value
                elif name in found:
                    del found[name]  # overridden by something else
        return found

    def refresh_cache(self, names: str | t.Iterable[str] | None = None,
                      expiration: Expiration = None) -> dict[str, t.Any]:
        """Compute stored properties now and return their values by name.

        :param names: the properties to refresh; all of them by default, which also
            drops entries of properties the class no longer has.
        :param expiration: seconds (or a ``timedelta``) these values stay fresh,
            instead of each property's own expiration.
        """
        properties = self.stored_properties()
        store = self._cache_store()
        if names is None:
            chosen = list(properties)
            stale = [name for name in store.keys() if name not in properties]
            store.delete(stale)
        else:
            chosen = [names] if isinstance(names, str) else list(names)
            unknown = [name for name in chosen if name not in properties]
            if unknown:
                valid = ", ".join(f"'{n}'" for n in properties) or "none"
                raise ValueError(
                    f"'{type(self).__name__}' has no stored property '{unknown[0]}'."
                    f" Its stored properties: {valid}."
                )
        return {name: properties[name].refresh(self, expiration, store) for name in chosen}

    def view_cache(self) -> dict[str, CacheEntry]:
        """The values of the stored properties kept now and still fresh, with their times."""
        properties = self.stored_properties()
        return {
            name: entry for name, entry in self._cache_store().all().items()
            if name in properties and not entry.expired
        }
