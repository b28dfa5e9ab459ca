"""Models and values as JSON data, and the orjson-backed JSON provider of the project's app.

Everything goes through :func:`flasker.util.json.dumps`, the serializer the API
extension uses too, so a value looks the same in every response.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask.json.provider import JSONProvider

from .json import dumps, loads

if t.TYPE_CHECKING:
    from flask import Flask, Response

_SCALARS = (str, int, float, bool, type(None))


def to_json_data(value: t.Any, depth: int = 1) -> t.Any:
    """``value`` as JSON data: dicts, lists, strings, numbers, booleans and ``None``.

    Unlike ``flask.jsonify`` it returns data, not a response: a view may return it, a
    task may store it.

    Models become dicts of their columns, with their relationships followed
    ``depth`` levels down (0: columns only). Datetimes and dates become ISO 8601
    strings, decimals strings (never rounded), UUIDs strings and enums their value.
    Any other type raises a ``TypeError`` naming it.

    ::

        to_json_data(house)             # {"id": 1, "address": "...", "owner": {...}}
        to_json_data([house], depth=0)  # [{"id": 1, "address": "...", "owner_id": 3}]
    """
    if depth < 0:
        raise ValueError(f"The depth of 'to_json_data' must be 0 or more, not {depth!r}.")
    return loads(dumps(_expand(value, depth)))


def _expand(value: t.Any, depth: int) -> t.Any:
    """Replace models by dicts, recursively; other values are left to the serializer."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Jsonifiable):
        return value.to_json(depth=depth)
    if isinstance(value, dict):
        return {k: _expand(v, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expand(v, depth) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_expand(v, depth) for v in sorted(value, key=repr)]
    if _is_model(value):
        return _model_dict(value, depth, None)
    return value


def _is_model(value: t.Any) -> bool:
    """Whether ``value`` is an instance of a mapped class (SQLAlchemy's instrumentation mark)."""
    return hasattr(value, "_sa_instance_state")


def _model_dict(instance: t.Any, depth: int, fields: t.Iterable[str] | None) -> dict[str, t.Any]:
    mapper = sa.inspect(type(instance))
    relationships = mapper.relationships
    if fields is None:
        # Private columns (such as Cacheable's '_cache') stay out unless named.
        names = [attr.key for attr in mapper.column_attrs if not attr.key.startswith("_")]
        if depth > 0:
            names += [rel.key for rel in relationships]
    else:
        names = [fields] if isinstance(fields, str) else list(fields)
    data: dict[str, t.Any] = {}
    for name in names:
        if name in relationships:
            # A relationship named in 'fields' at depth 0 still shows its columns.
            data[name] = _expand(getattr(instance, name), max(depth - 1, 0))
        elif name in mapper.column_attrs:
            data[name] = getattr(instance, name)
        elif not name.startswith("_") and hasattr(type(instance), name):
            data[name] = _expand(getattr(instance, name), max(depth - 1, 0))
        else:
            columns = ", ".join(f"'{a.key}'" for a in mapper.column_attrs)
            raise ValueError(
                f"'{type(instance).__name__}' has no field '{name}' to serialize."
                f" Its columns: {columns}."
            )
    return data


class Jsonifiable:
    """A model mixin giving ``to_json(depth, fields)``; override it to shape the output.

    ``flasker.util.json.dumps`` (and so the API and ``to_json_data``) calls ``to_json()``.
    """

    def to_json(self, depth: int = 1, fields: t.Iterable[str] | None = None) -> dict[str, t.Any]:
        """This instance as JSON data.

        :param depth: how many levels of relationships to follow (0: columns only).
        :param fields: the names to include (columns, relationships or properties)
            instead of every column and relationship.
        """
        if depth < 0:
            raise ValueError(f"The depth of 'to_json' must be 0 or more, not {depth!r}.")
        if not _is_model(self):
            raise TypeError(
                f"'{type(self).__name__}' is not a mapped model: 'Jsonifiable' needs"
                " 'flasker.Model' (or another declarative base) among its bases,"
                " or an overridden 'to_json'."
            )
        return t.cast("dict[str, t.Any]", loads(dumps(_model_dict(self, depth, fields))))


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider (``app.json``) on flasker's serializer.

    ``flask.jsonify``, ``request.json`` and the ``tojson`` filter go through it.
    Unlike Flask's default, dates are written in ISO 8601 and an unknown type is a
    ``TypeError`` rather than a guess. Responses are indented in debug mode, as
    Flask does, unless ``compact`` is set.
    """

    mimetype = "application/json"
    compact: bool | None = None

    def dumps(self, obj: t.Any, **kwargs: t.Any) -> str:
        # Flask passes formatting options (separators, sort_keys) meant for the json
        # module; orjson's output is compact already, so only 'indent' is honoured.
        return dumps(obj, indent=bool(kwargs.get("indent"))).decode()

    def loads(self, s: str | bytes, **kwargs: t.Any) -> t.Any:
        return loads(s)

    def response(self, *args: t.Any, **kwargs: t.Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        app = t.cast("Flask", self._app)
        indent = self.compact is False or (self.compact is None and app.debug)
        return app.response_class(dumps(obj, indent=indent) + b"\n", mimetype=self.mimetype)


def init_json(app: Flask) -> OrjsonProvider:
    """Make flasker's serializer the app's JSON provider (``app.json``)."""
    provider = OrjsonProvider(app)
    app.json = provider
    if "jinja_env" in app.__dict__:  # created already: its 'tojson' filter kept the old one
        app.jinja_env.policies["json.dumps_function"] = provider.dumps
    return provider
