"""The ``[CACHE]`` section: where :class:`~flasker.util.Cacheable` models keep their values."""

from __future__ import annotations

import typing as t

from .config import Config, ConfigError, Option, section_options, slug, to_str
from .util.cache import EXTENSION_KEY, CacheSettings

if t.TYPE_CHECKING:
    from flask import Flask

CACHE_SECTION = "CACHE"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

CACHE_OPTIONS: tuple[Option, ...] = (
    Option("URL", to_str, None,
           "Where Cacheable models keep their cache: unset for the row's '_cache' column,"
           " or a redis://, rediss:// or unix:// URL."),
    Option("PREFIX", to_str, None,
           "Prefix of the Redis keys; default 'flasker:<project>:cache:'."),
)


def cache_settings(config: Config) -> CacheSettings:
    """Resolve the ``[CACHE]`` section: a ``ConfigError`` names a bad value."""
    options = section_options(config, CACHE_SECTION, CACHE_OPTIONS)
    url = options["URL"] or None
    if url is None:
        return CacheSettings(None, options["PREFIX"] or "", {})
    if not url.startswith(REDIS_SCHEMES):
        source = config.source_of(CACHE_SECTION, "URL")
        raise ConfigError(
            f"Config 'CACHE.URL' has value {url!r} ({source}). Expected a redis://, rediss://"
            " or unix:// URL, or no value to keep the cache in the database."
        )
    prefix = options["PREFIX"] or f"flasker:{slug(config.get('PROJECT', 'NAME'))}:cache:"
    return CacheSettings(url, prefix, {})


def init_cache(app: Flask, config: Config) -> CacheSettings:
    """Read the ``[CACHE]`` section now, so that a bad value stops start-up."""
    settings = cache_settings(config)
    app.extensions[EXTENSION_KEY] = settings
    return settings
