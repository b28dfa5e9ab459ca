"""Reading the project's configuration: one ``.cfg`` file overlaid by the environment.

The whole precedence lives in :func:`load_config`, lowest first: built-in
defaults, the file, ``FLASKER__<SECTION>__<KEY>`` variables (and their
``_FILE`` twins), then overrides passed in code. Every value remembers where it
came from, so an error or ``flasker config`` can say so.
"""

from __future__ import annotations

import configparser
import difflib
import os
import re
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

# The converters of declared options; extensions import them from here.
from .util.convert import parse_value, sentence
from .util.convert import to_bool as to_bool
from .util.convert import to_float as to_float
from .util.convert import to_int as to_int
from .util.convert import to_json as to_json
from .util.convert import to_list as to_list
from .util.convert import to_str as to_str

ENV_PREFIX = "FLASKER__"
CONFIG_ENV_VAR = "FLASKER_CONFIG"

PROJECT = "PROJECT"
APP = "APP"
CELERY = "CELERY"
ENGINE = "ENGINE"


class ConfigError(ValueError):
    """A configuration value is missing, misspelt or of the wrong type."""


class ConfigNotFound(ConfigError):
    """No configuration file could be located."""


@dataclass(frozen=True)
class Source:
    """Where a value came from: ``kind`` is ``default``, ``file``, ``env`` or ``code``."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "default":
            return "built-in default"
        if self.kind == "code":
            return "code override"
        return self.detail


DEFAULT = Source("default")
CODE = Source("code")


# -- typed options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A declared configuration key: its converter, default and one line of help."""

    name: str
    convert: t.Callable[[str], t.Any]
    default: t.Any = None
    help: str = ""
    required: bool = False

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.convert, "string")


def _json_of(kind: type, expected: str) -> t.Callable[[str], t.Any]:
    def convert(raw: str) -> t.Any:
        value = to_json(raw)
        if not isinstance(value, kind):
            raise ValueError(f"Not {expected}.")
        return value

    return convert


#: A JSON object (``connect_args``, a Celery setting of type dict).
to_json_object = _json_of(dict, "a JSON object")


def _one_of(*choices: str) -> t.Callable[[str], str]:
    """A converter accepting one of ``choices`` (any case, surrounding whitespace ignored)."""

    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"not one of {', '.join(repr(c) for c in choices)}")
        return value

    return convert


def _database_url(raw: str) -> str:
    """A SQLAlchemy URL of a dialect SQLAlchemy knows (empty: the SQLite default)."""
    if raw.strip():
        # SQLAlchemy's engine package is heavy: imported here keeps 'flasker --help' fast.
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (start-up cost)
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            make_url(raw.strip()).get_dialect()
        except ArgumentError as e:  # unparsable, or a dialect/driver SQLAlchemy does not know
            reason = str(e).split(" (Background on this error")[0]
            raise ValueError(
                f"not a database URL such as 'postgresql+psycopg://user:password@host/db' or"
                f" 'sqlite:///db.sqlite' ({reason})"
            ) from None
    return raw


def _module_names(raw: str) -> list[str]:
    """A list of importable module names: ``app.views, app.tasks``."""
    names = to_list(raw)
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{name!r} is not a module name such as 'app.views'")
    return names


def _url_path(raw: str) -> str:
    """A URL path of the app's own: ``/static`` (empty: served at the root)."""
    if raw and (not raw.startswith("/") or "<" in raw or any(c.isspace() for c in raw)):
        raise ValueError("not a URL path such as '/static' (starting with '/', without '<'"
                         " or spaces)")
    return raw


_TYPE_NAMES: dict[t.Callable[[str], t.Any], str] = {
    to_bool: "bool",
    to_int: "int",
    to_float: "float",
    to_list: "list",
    _module_names: "list",
    to_json: "JSON",
    to_json_object: "JSON object",
    to_str: "string",
}

PROJECT_OPTIONS: tuple[Option, ...] = (
    Option("NAME", to_str, help="The project's name; the Celery queue and node derive from it.",
           required=True),
    Option("MODULES", _module_names, [], "Modules imported in order at start-up (comma list)."),
    Option("DB_URL", _database_url, None,
           "SQLAlchemy database URL; default: SQLite file 'db.sqlite' beside the .cfg."),
    Option("APP_FOLDER", to_str, "app", "Folder of the Flask application, relative to the .cfg."),
    Option("APP_STATIC_FOLDER", to_str, "static", "Static folder, relative to APP_FOLDER."),
    Option("APP_TEMPLATE_FOLDER", to_str, "templates", "Template folder, relative to APP_FOLDER."),
    Option("STATIC_URL", _url_path, None, "URL path of the static files; default '/static'."),
    Option("STATE_FOLDER", to_str, ".flasker",
           "Writable folder for the embedded broker, beat schedule, pid and heartbeat files."),
    Option("MIGRATIONS_FOLDER", to_str, "migrations", "Alembic migrations, relative to the .cfg."),
    Option("LOG_LEVEL", to_str, "INFO", "Level of the root logger."),
    Option("LOG_FORMAT", to_str, "text", "'text' (human-readable) or 'json' (JSON lines)."),
    Option("RETRY_AFTER", to_int, 5,
           "Seconds in the 'Retry-After' header of the 503 answered while the database or"
           " the broker cannot be reached."),
    Option("TASK_RETRY_MAX", to_int, 10,
           "Retries of a task that failed because the database, the broker or the result"
           " backend could not be reached (0: none; a task opts out with"
           " 'retry_on_outage=False')."),
    Option("TASK_RETRY_BACKOFF", to_float, 2.0,
           "Seconds before the first such retry, doubled at each retry (with random jitter)."),
    Option("TASK_RETRY_BACKOFF_MAX", to_float, 60.0,
           "Longest wait in seconds between two such retries."),
)

ENGINE_OPTIONS: tuple[Option, ...] = (
    Option("pool_pre_ping", to_bool, True, "Test connections before use."),
    Option("echo", to_bool, False, "Log every SQL statement."),
    Option("echo_pool", to_bool, False, "Log pool checkouts and checkins."),
    Option("hide_parameters", to_bool, False, "Keep SQL parameters out of logs and errors."),
    Option("pool_size", to_int, None, "Connections kept in the pool."),
    Option("max_overflow", to_int, None, "Connections allowed beyond pool_size."),
    Option("pool_timeout", to_float, None, "Seconds to wait for a connection from the pool."),
    Option("pool_recycle", to_int, None, "Seconds after which a connection is replaced."),
    Option("pool_use_lifo", to_bool, None, "Reuse the most recent connection first."),
    Option("pool_reset_on_return", _one_of("rollback", "commit", "none"), None,
           "'rollback', 'commit' or 'none'."),
    Option("isolation_level", to_str, None, "Transaction isolation level."),
    Option("query_cache_size", to_int, None, "Size of the SQL compilation cache."),
    Option("insertmanyvalues_page_size", to_int, None, "Rows per batched INSERT."),
    Option("connect_args", to_json_object, None, "JSON object passed to the DBAPI's connect()."),
    Option("execution_options", to_json_object, None, "JSON object of default execution options."),
)

DECLARED: dict[str, tuple[Option, ...]] = {PROJECT: PROJECT_OPTIONS, ENGINE: ENGINE_OPTIONS}


# -- the configuration object -----------------------------------------------------------------


@dataclass
class Entry:
    """One resolved value with its raw text (``None`` for a default) and its source."""

    value: t.Any
    source: Source
    raw: str | None = None


@dataclass
class Config:
    """The effective configuration: ``config["PROJECT"]["NAME"]`` gives a typed value."""

    path: Path | None
    sections: dict[str, dict[str, Entry]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The folder that relative paths are resolved against: the file's, else the cwd."""
        return self.path.parent if self.path is not None else Path.cwd()

    def __getitem__(self, section: str) -> dict[str, t.Any]:
        return {key: entry.value for key, entry in self.sections.get(section, {}).items()}

    def __contains__(self, section: object) -> bool:
        return section in self.sections

    def get(self, section: str, key: str, default: t.Any = None) -> t.Any:
        entry = self.sections.get(section, {}).get(key)
        return default if entry is None else entry.value

    def source_of(self, section: str, key: str) -> Source | None:
        entry = self.sections.get(section, {}).get(key)
        return None if entry is None else entry.source

    def section_entries(self, section: str) -> dict[str, Entry]:
        return dict(self.sections.get(section, {}))


# -- locating the file ------------------------------------------------------------------------


def find_config_file(explicit: str | os.PathLike[str] | None = None,
                     environ: t.Mapping[str, str] | None = None,
                     cwd: Path | None = None) -> Path:
    """Find the configuration file: ``explicit``, ``FLASKER_CONFIG``, or the one ``*.cfg``."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        path = Path(explicit)
        origin = "the '--config' option"
    elif environ.get(CONFIG_ENV_VAR):
        path = Path(environ[CONFIG_ENV_VAR])
        origin = f"the environment variable '{CONFIG_ENV_VAR}'"
    else:
        folder = cwd or Path.cwd()
        candidates = sorted(folder.glob("*.cfg"))
        if not candidates:
            raise ConfigNotFound(
                f"No configuration file found: there is no '*.cfg' in '{folder}'. Pass one with"
                f" '-c/--config', set '{CONFIG_ENV_VAR}', or create a project with 'flasker new'."
            )
        if len(candidates) > 1:
            names = ", ".join(f"'{c.name}'" for c in candidates)
            raise ConfigNotFound(
                f"Several configuration files in '{folder}': {names}. Choose one with"
                f" '-c/--config' or '{CONFIG_ENV_VAR}'."
            )
        return candidates[0].resolve()
    if not path.is_file():
        raise ConfigNotFound(f"The configuration file '{path}' named by {origin} does not exist.")
    return path.resolve()


# -- reading the layers -----------------------------------------------------------------------

_SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]")
_KEY_RE = re.compile(r"^([^\s=:#;][^=:]*?)\s*[=:]")


def _key_lines(path: Path, text: str) -> dict[tuple[str, str], int]:
    """Line numbers of each ``(SECTION, key)`` in the file, for error messages."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _SECTION_RE.match(line):
            section = match.group(1).strip().upper()
        elif (match := _KEY_RE.match(line)) and section:
            lines.setdefault((section, match.group(1).strip()), number)
    return lines


def _read_file(path: Path) -> dict[str, dict[str, tuple[str, Source]]]:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=", ":"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"The configuration file '{path}' is not UTF-8 text (byte {e.start}): is it the"
            " right file? Save it as UTF-8."
        ) from e
    except OSError as e:
        raise ConfigError(f"The configuration file '{path}' cannot be read: {e.strerror}.") from e
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as e:
        raise ConfigError(f"The configuration file '{path}' cannot be parsed: {e}") from e
    lines = _key_lines(path, text)
    layer: dict[str, dict[str, tuple[str, Source]]] = {}
    for section in parser.sections():
        upper = section.strip().upper()
        values = layer.setdefault(upper, {})
        for key, raw in parser.items(section):
            line = lines.get((upper, key))
            where = f"{path}:{line}" if line else str(path)
            values[key] = (raw, Source("file", where))
    return layer


def _read_env(environ: t.Mapping[str, str]) -> dict[str, dict[str, tuple[str, Source]]]:
    layer: dict[str, dict[str, tuple[str, Source]]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        section, sep, key = name[len(ENV_PREFIX):].partition("__")
        if not sep or not section or not key:
            raise ConfigError(
                f"The environment variable '{name}' is not of the form"
                f" '{ENV_PREFIX}<SECTION>__<KEY>'."
            )
        raw = environ[name]
        source = Source("env", f"environment variable '{name}'")
        if key.endswith("_FILE"):
            key = key[: -len("_FILE")]
            secret = Path(raw)
            try:
                raw = secret.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as e:
                raise ConfigError(
                    f"The environment variable '{name}' names the file '{raw}', which cannot be"
                    f" read: {e.strerror}."
                ) from e
            source = Source("env", f"file '{secret}' (environment variable '{name}')")
        layer.setdefault(section.upper(), {})[key] = (raw, source)
    return layer


def _code_layer(overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None
                ) -> dict[str, dict[str, tuple[t.Any, Source]]]:
    layer: dict[str, dict[str, tuple[t.Any, Source]]] = {}
    for section, values in (overrides or {}).items():
        target = layer.setdefault(section.upper(), {})
        for key, value in values.items():
            target[key] = (value, CODE)
    return layer


# -- normalising keys -------------------------------------------------------------------------


def _declared(section: str, key: str, name: str, options: t.Sequence[Option],
              source: Source) -> str:
    """``name`` (the key as normalised) when ``options`` declare it; else the error suggests one."""
    names = {o.name for o in options}
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown key '{key}' in section [{section}] ({source}).{suggestion}"
            f" Valid keys: {', '.join(sorted(names))}."
        )
    return name


def _bad_value(section: str, key: str, raw: str, source: Source, error: ValueError
               ) -> ConfigError:
    # A secret, or the password in a URL, stays out of the message (and out of logs).
    return ConfigError(
        f"Config '{section}.{key}' has value {mask(key, raw)!r} ({source}). {sentence(error)}")


def _normalise_key(section: str, key: str, source: Source) -> str:
    if section == PROJECT:
        return _declared(section, key, key.upper(), PROJECT_OPTIONS, source)
    if section == ENGINE:
        return _declared(section, key, key.lower(), ENGINE_OPTIONS, source)
    if section == CELERY:
        return celery_key(key)
    return key.upper()


def celery_key(key: str) -> str:
    """Map a Celery setting to its Celery 5 lower-case name (legacy upper-case names accepted)."""
    from celery.app.defaults import _TO_NEW_KEY, SETTING_KEYS  # noqa: PLC0415 (start-up cost)

    lower = key.lower()
    if lower in SETTING_KEYS:
        return lower
    if key.upper() in _TO_NEW_KEY:
        return t.cast(str, _TO_NEW_KEY[key.upper()])
    return lower


# -- converting values ------------------------------------------------------------------------


def _celery_convert(key: str) -> t.Callable[[str], t.Any] | None:
    from celery.app.defaults import NAMESPACES, flatten  # noqa: PLC0415

    if key in _CELERY_DECLARED:
        return _CELERY_DECLARED[key]
    for name, option in flatten(NAMESPACES):
        if name == key:
            # Celery spells a type as text ('int'), and a few as the class itself (int).
            kind = option.type if isinstance(option.type, str) else option.type.__name__
            return {
                "bool": to_bool, "int": to_int, "float": to_float, "string": to_str,
                "str": to_str, "dict": to_json_object, "list": _list_or_json,
                "tuple": _list_or_json,
            }.get(kind)
    return None


def _list_or_json(raw: str) -> t.Any:
    return to_json(raw) if raw.strip().startswith("[") else to_list(raw)


_FLASK_TYPES: dict[type, t.Callable[[str], t.Any]] = {bool: to_bool, int: to_int, float: to_float}

# Flask settings whose default is None, so that their type cannot be read off the default.
_FLASK_DECLARED: dict[str, t.Callable[[str], t.Any]] = {
    "DEBUG": to_bool,
    "PROPAGATE_EXCEPTIONS": to_bool,
    "TRAP_BAD_REQUEST_ERRORS": to_bool,
    "TEMPLATES_AUTO_RELOAD": to_bool,
    "MAX_CONTENT_LENGTH": to_int,
    "SEND_FILE_MAX_AGE_DEFAULT": to_int,
    # A timedelta by default; Flask takes seconds too, and a text would fail per request.
    "PERMANENT_SESSION_LIFETIME": to_int,
    "SECRET_KEY": to_str,
    "SERVER_NAME": to_str,
    "SESSION_COOKIE_DOMAIN": to_str,
    "SESSION_COOKIE_PATH": to_str,
    "SESSION_COOKIE_SAMESITE": to_str,
    "APPLICATION_ROOT": to_str,
    "PREFERRED_URL_SCHEME": to_str,
}

# Celery settings that Celery itself declares as 'any'.
_CELERY_DECLARED: dict[str, t.Callable[[str], t.Any]] = {
    "worker_concurrency": to_int,
}


def _flask_convert(key: str) -> t.Callable[[str], t.Any] | None:
    if key in _FLASK_DECLARED:
        return _FLASK_DECLARED[key]
    # Flask is imported by the project; imported here keeps 'flasker --help' fast.
    from flask import Flask  # noqa: PLC0415 (start-up cost)

    default = Flask.default_config.get(key)
    if default is None:
        return None
    return _FLASK_TYPES.get(type(default))


def _converter(section: str, key: str,
               extra: t.Mapping[str, t.Sequence[Option]]) -> t.Callable[[str], t.Any]:
    declared = {**DECLARED, **extra}.get(section)
    if declared is not None:
        for option in declared:
            if option.name == key:
                return option.convert
    if section == CELERY:
        return _celery_convert(key) or parse_value
    if section == APP:
        return _flask_convert(key) or parse_value
    return parse_value


def _convert(section: str, key: str, raw: t.Any, source: Source,
             extra: t.Mapping[str, t.Sequence[Option]]) -> t.Any:
    if not isinstance(raw, str):  # an override from code is taken as given
        return raw
    convert = _converter(section, key, extra)
    try:
        return convert(raw)
    except ValueError as e:
        raise _bad_value(section, key, raw, source, e) from None


# -- the pipeline -----------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None, *,
                overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
                environ: t.Mapping[str, str] | None = None,
                extra_options: t.Mapping[str, t.Sequence[Option]] | None = None,
                search: bool = True) -> Config:
    """Build the effective configuration: defaults < file < environment < code overrides.

    :param path: the ``.cfg`` file; when ``None`` and ``search`` is true it is located
        with :func:`find_config_file`.
    :param overrides: ``{"SECTION": {"KEY": value}}`` applied last, taken as given.
    :param environ: the environment to read (``os.environ`` by default).
    :param extra_options: declared options of extension sections, by section name.
    """
    environ = os.environ if environ is None else environ
    extra = dict(extra_options or {})
    file_path: Path | None = None
    if path is not None or search:
        file_path = find_config_file(path, environ)

    config = Config(path=file_path)
    for section, options in DECLARED.items():
        config.sections[section] = {
            o.name: Entry(o.default, DEFAULT) for o in options if o.default is not None
        }

    layers: list[dict[str, dict[str, tuple[t.Any, Source]]]] = []
    if file_path is not None:
        layers.append(_read_file(file_path))
    layers.append(_read_env(environ))
    layers.append(_code_layer(overrides))

    for layer in layers:
        for section, values in layer.items():
            target = config.sections.setdefault(section, {})
            for key, (raw, source) in values.items():
                name = _normalise_key(section, key, source)
                value = _convert(section, name, raw, source, extra)
                target[name] = Entry(value, source, raw if isinstance(raw, str) else None)

    for section, options in DECLARED.items():
        for option in options:
            if option.required and option.name not in config.sections[section]:
                where = f" '{file_path}'" if file_path else ""
                raise ConfigError(
                    f"Config '{section}.{option.name}' is required: add '{option.name} = ...'"
                    f" under [{section}] in the configuration file{where}, or set"
                    f" '{ENV_PREFIX}{section}__{option.name}'."
                )
    return config


def section_options(config: Config, section: str, options: t.Sequence[Option],
                    defaults: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Resolve an extension's section against its declared options.

    ``defaults`` (the extension's constructor arguments, by option name) sit between
    the options' own defaults and the section, which wins. A key the extension does
    not declare is an error that suggests the nearest one.
    """
    resolved: dict[str, t.Any] = {o.name: o.default for o in options}
    resolved.update({k.upper(): v for k, v in (defaults or {}).items() if v is not None})
    for key, entry in config.section_entries(section).items():
        upper = _declared(section, key, key.upper(), options, entry.source)
        value = entry.value
        if entry.raw is not None:
            option = next(o for o in options if o.name == upper)
            try:
                value = option.convert(entry.raw)
            except ValueError as e:
                raise _bad_value(section, upper, entry.raw, entry.source, e) from None
        resolved[upper] = value
    return resolved


# -- names and folders derived from the configuration -----------------------------------------


def slug(name: str) -> str:
    """A name fit for queues, node names, keys and files: ``My Project`` → ``my-project``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "flasker"


def state_folder(config: Config) -> Path:
    """``[PROJECT] STATE_FOLDER``, absolute: relative paths are taken from the ``.cfg``'s folder."""
    folder = Path(config.get(PROJECT, "STATE_FOLDER"))
    if not folder.is_absolute():
        folder = config.root / folder
    return folder


# -- secrets ----------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_KEY|_KEY$)", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?=@)", re.I)
MASK = "********"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_NAME.search(key))


def mask(key: str, value: t.Any) -> t.Any:
    """Hide a secret value, and the password inside any URL."""
    if value is None:
        return None
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)
    if isinstance(value, dict):
        return {k: mask(str(k), v) for k, v in value.items()}
    return value


_PLACEHOLDERS = {"", "secret", "dev", "development", "changeme", "change-me", "change_me",
                 "secret-key", "secretkey", "your-secret-key", "placeholder", "xxx", "test"}
MIN_SECRET_LENGTH = 16
SECRET_HOWTO = "Generate one with: python -c 'import secrets; print(secrets.token_hex())'"


def weak_secret_reason(value: t.Any) -> str | None:
    """Why a secret is unfit for production, or ``None`` when it is fine."""
    if value is None or value == "":
        return "it is not set"
    text = value.decode() if isinstance(value, bytes) else str(value)
    lowered = text.lower()
    if lowered in _PLACEHOLDERS or any(w in lowered for w in ("change", "placeholder", "replace")):
        return "it is a placeholder"
    if len(text) < MIN_SECRET_LENGTH:
        return f"it is shorter than {MIN_SECRET_LENGTH} characters"
    return None
