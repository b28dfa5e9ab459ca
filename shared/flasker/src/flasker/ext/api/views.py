"""The endpoints: one collection rule and one member rule under the prefix serve every model.

``/<collection>/`` and ``/<collection>/<key...>[/<relationship>[/<position>]]``
are resolved here rather than by one URL rule per model, so that models declared
after the manager (or added later) are served without touching the URL map.
"""

from __future__ import annotations

import hashlib
import typing as t
from urllib.parse import quote, urlencode

import orjson
import sqlalchemy as sa
from flask import Response, request
from sqlalchemy.orm import aliased, with_loader_criteria
from werkzeug.exceptions import MethodNotAllowed

from ...util.json import dumps
from .columns import Invalid
from .problems import FieldError, Problem, invalid_input, not_found
from .query import (
    ListArgs,
    ReadArgs,
    check_names,
    encode_cursor,
    parse_filter,
    parse_list,
    parse_read,
)
from .serialize import Reader
from .validation import CREATE, MANY, REPLACE, UPDATE, Input, check_body

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .manager import APIState
    from .model import Key, ModelSpec, RelationSpec

JSON = "application/json"


class Access:
    """One request's view of the API: which models it may read, and their scopes."""

    def __init__(self, state: APIState) -> None:
        self.state = state
        self.manager = state.manager
        self._readable: dict[str, bool] = {}
        self._options: list[t.Any] | None = None
        self.scoped: set[type[t.Any]] = set()

    @property
    def dialect(self) -> str:
        return self.state.project.engine.dialect.name

    def spec_of(self, model: type[t.Any]) -> ModelSpec | None:
        return self.state.specs.get(model)

    def spec_named(self, collection: str) -> ModelSpec | None:
        return self.state.by_collection.get(collection)

    def readable(self, spec: ModelSpec) -> bool:
        found = self._readable.get(spec.collection)
        if found is None:
            found = "GET" in spec.options.methods and self.manager.allows(spec.model, "GET", None)
            self._readable[spec.collection] = found
        return found

    def authorize(self, spec: ModelSpec, method: str, key: Key = None) -> None:
        if not self.manager.allows(spec.model, method, key):
            raise Problem.of("forbidden", f"You may not {method} {spec.collection}"
                             f"{'' if key is None else ' ' + repr(spec.key_text(key))}.")

    def options(self) -> list[t.Any]:
        """``with_loader_criteria`` of every scoped model, for every statement of the request."""
        if self._options is None:
            self._options = []
            for model, scope in self.manager.scopes.items():
                criterion = scope()
                if criterion is not None:
                    self.scoped.add(model)
                    self._options.append(
                        with_loader_criteria(model, criterion, include_aliases=True))
        return self._options


# -- responses --------------------------------------------------------------------------------


def json_response(data: t.Any, status: int = 200, *, etag: bool = False,
                  headers: t.Mapping[str, str] | None = None) -> Response:
    body = dumps(data)
    if etag:
        # A validator, not a secret: SHA-1 is the fastest digest here (as Werkzeug's ETags).
        tag = hashlib.sha1(body, usedforsecurity=False).hexdigest()
        if request.if_none_match.contains_weak(tag):
            response = empty(304)
            response.set_etag(tag)
            return response
    response = Response(body, status=status, mimetype=JSON)
    if etag:
        response.set_etag(tag)
    if headers:
        response.headers.update(headers)
    return response


def empty(status: int) -> Response:
    """A response without a body (204, 304), hence without a content type."""
    response = Response(status=status)
    del response.headers["Content-Type"]
    return response


def _urls(name: str) -> t.Callable[[t.Any], str]:
    """This request's URL with the query parameter ``name`` set to a given value (last)."""
    kept = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != name])
    prefix = f"{request.base_url}?{kept}{'&' if kept else ''}"
    return lambda value: prefix + urlencode([(name, str(value))])


def _json_body() -> t.Any:
    mimetype = request.mimetype
    if mimetype != JSON and not (mimetype.startswith("application/") and
                                 mimetype.endswith("+json")):
        raise Problem.of("unsupported-media-type",
                         f"Send the body as JSON with the header 'Content-Type: {JSON}'"
                         f" (got {mimetype or 'none'!r}).")
    data = request.get_data(cache=False)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Problem.of("malformed-json", f"The body is not valid JSON: {e}.",
                         [FieldError("", str(e))]) from None


# -- dispatch ---------------------------------------------------------------------------------


class Endpoints:
    """Serves every model of one app's API."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    @property
    def db(self) -> Session:
        return self.state.project.db()

    def collection(self, collection: str) -> Response:
        spec = self._spec(collection)
        method = _method()
        allowed: list[str] = [m for m in ("GET", "POST") if m in spec.options.methods]
        if "PUT" in spec.options.methods and spec.options.allow_put_many:
            allowed.append("PUT")
        _check(method, allowed)
        access = Access(self.state)
        if method == "OPTIONS":
            return _options(allowed)
        if method == "GET":
            return self.list_items(spec, access)
        if method == "POST":
            return self.create(spec, access)
        return self.put_many(spec, access)

    def member(self, collection: str, rest: str) -> Response:
        spec = self._spec(collection)
        segments = rest.split("/")
        if segments[-1] == "":
            segments.pop()
        width = len(spec.pk)
        if len(segments) < width or len(segments) > width + 2:
            raise not_found(f"There is nothing at this URL: a {spec.name} is at"
                            f" '{spec.collection}/{'/'.join('<' + c.key + '>' for c in spec.pk)}'.")
        try:
            key = spec.key_from_text(segments[:width])
        except Invalid:
            raise not_found(f"No {spec.name} has the key {'/'.join(segments[:width])!r}.") \
                from None
        more = segments[width:]
        access = Access(self.state)
        method = _method()
        if not more:
            allowed: list[str] = [
                m for m in ("GET", "PUT", "PATCH", "DELETE") if m in spec.options.methods]
            _check(method, allowed)
            if method == "OPTIONS":
                return _options(allowed)
            if method == "GET":
                return self.get(spec, access, key)
            if method == "DELETE":
                return self.delete(spec, access, key)
            return self.write(spec, access, key, REPLACE if method == "PUT" else UPDATE)
        relation = spec.relations.get(more[0])
        target = self.state.specs.get(relation.target) if relation is not None else None
        if relation is None or target is None:
            raise not_found(f"{spec.name} has no relationship {more[0]!r} in this API.")
        if len(more) == 2:
            if not relation.many:
                raise not_found(f"{spec.name}.{relation.key} is one object, not a list.")
            allowed = ["GET"] if "GET" in spec.options.methods else []
            _check(method, allowed)
            if method == "OPTIONS":
                return _options(allowed)
            return self.position(spec, access, key, relation, target, more[1])
        allowed = ["GET"] if "GET" in spec.options.methods else []
        if relation.many and relation.writable and "PUT" in spec.options.methods:
            allowed.append("PUT")
        _check(method, allowed)
        if method == "OPTIONS":
            return _options(allowed)
        if method == "GET":
            return self.related(spec, access, key, relation, target)
        return self.put_related(spec, access, key, relation, target)

    def _spec(self, collection: str) -> ModelSpec:
        spec = self.state.by_collection.get(collection)
        if spec is None:
            raise not_found(f"There is no collection {collection!r} in this API; the"
                            f" collections are listed at '{self.state.prefix}/'.")
        return spec

    # -- reads ------------------------------------------------------------------------------

    def list_items(self, spec: ModelSpec, access: Access) -> Response:
        access.authorize(spec, "GET")
        read = parse_list(request.args, spec, self.state.limits, access)
        return self._page(spec, access, read, [])

    def get(self, spec: ModelSpec, access: Access, key: Key) -> Response:
        access.authorize(spec, "GET", key)
        read = parse_read(request.args, spec, self.state.limits, access)
        item = Reader(self.db, access, read, access.options(), access.scoped).one(spec, key)
        if item is None:
            raise _missing(spec, key)
        return json_response(item, etag=True)

    def related(self, spec: ModelSpec, access: Access, key: Key, relation: RelationSpec,
                target: ModelSpec) -> Response:
        access.authorize(spec, "GET", key)
        access.authorize(target, "GET")
        self._require(spec, access, key)
        members = _members(spec, key, relation, target)
        if relation.many:
            read = parse_list(request.args, target, self.state.limits, access,
                              default_order=relation.order_by)
            return self._page(target, access, read, [members])
        single = parse_read(request.args, target, self.state.limits, access)
        found = self.db.execute(
            sa.select(*target.pk_attrs).where(members).options(*access.options())).first()
        if found is None:
            raise not_found(f"{spec.name} {spec.key_text(key)!r} has no {relation.key}.")
        child = found[0] if len(found) == 1 else tuple(found)
        item = Reader(self.db, access, single, access.options(), access.scoped).one(target, child)
        return json_response(item, etag=True)

    def position(self, spec: ModelSpec, access: Access, key: Key, relation: RelationSpec,
                 target: ModelSpec, text: str) -> Response:
        access.authorize(spec, "GET", key)
        access.authorize(target, "GET")
        if not text.isdigit() or int(text) < 1:
            raise not_found(f"Positions in {spec.name}.{relation.key} count from 1, not {text!r}.")
        check_names(request.args, frozenset({"depth", "fields"}))
        self._require(spec, access, key)
        read = parse_list(request.args, target, self.state.limits, access,
                          default_order=relation.order_by)
        reader = Reader(self.db, access, read, access.options(), access.scoped)
        page = reader.page(target, [_members(spec, key, relation, target)], read.order,
                           read.order_by(), 1, int(text) - 1)
        if not page.items:
            raise not_found(f"{spec.name} {spec.key_text(key)!r} has no {relation.key} at"
                            f" position {text}.")
        return json_response(page.items[0], etag=True)

    def _page(self, spec: ModelSpec, access: Access, read: ListArgs,
              extra: list[sa.ColumnElement[bool]]) -> Response:
        options = access.options()
        criteria = [*read.criteria, *extra]
        total = None
        if read.total:
            def count() -> sa.Select[t.Any]:
                counted = sa.select(*spec.pk_attrs).where(*criteria).subquery()
                return sa.select(sa.func.count()).select_from(counted).options(*options)

            # On the session's connection, as the reader's selects: compiled by the ORM (for
            # the scopes), without the ORM's result handling.
            stmt = count() if criteria or options else spec.statement(("count",), count)
            total = self.db.connection().execute(stmt).scalar()
        reader = Reader(self.db, access, read, options, access.scoped)
        offset = 0 if read.keyset else read.offset
        page = reader.page(spec, [*read.window(), *extra], read.order, read.order_by(),
                           read.limit, offset)
        body: dict[str, t.Any] = {"items": page.items, "limit": read.limit}
        if total is not None:
            body["total"] = total
        links = []
        if read.keyset:
            token = (encode_cursor(read, page.last_order)
                     if page.has_more and page.last_order is not None else None)
            body["next_cursor"] = token
            url = _urls("cursor")
            links.append(f'<{url("")}>; rel="first"')
            if token is not None:
                links.append(f'<{url(token)}>; rel="next"')
        else:
            body["offset"] = read.offset
            url = _urls("offset")
            links.append(f'<{url(0)}>; rel="first"')
            if read.offset:
                links.append(f'<{url(max(0, read.offset - read.limit))}>; rel="prev"')
            if page.has_more:
                links.append(f'<{url(read.offset + read.limit)}>; rel="next"')
            if total is not None:
                last = max(0, (total - 1) // read.limit * read.limit)
                links.append(f'<{url(last)}>; rel="last"')
        return json_response(body, etag=True, headers={"Link": ", ".join(links)})

    def _require(self, spec: ModelSpec, access: Access, key: Key) -> None:
        found = self.db.execute(sa.select(*spec.pk_attrs).where(spec.where_key(key))
                                .options(*access.options())).first()
        if found is None:
            raise _missing(spec, key)

    # -- writes -----------------------------------------------------------------------------

    def create(self, spec: ModelSpec, access: Access) -> Response:
        access.authorize(spec, "POST")
        check_names(request.args, frozenset())
        data = check_body(spec, _json_body(), CREATE, access)
        instance = spec.model()
        self._apply(spec, access, "POST", data, instance, new=True)
        self.db.add(instance)
        self.db.flush()
        values = tuple(getattr(instance, c.key) for c in spec.pk)
        key = values[0] if len(values) == 1 else values
        self.db.commit()
        item = self._reread(spec, access, key)
        location = f"{request.url_root.rstrip('/')}{self.state.prefix}/{spec.collection}/" + \
            "/".join(_quote(v) for v in values)
        return json_response(item, 201, headers={"Location": location})

    def write(self, spec: ModelSpec, access: Access, key: Key, mode: str) -> Response:
        method = "PUT" if mode == REPLACE else "PATCH"
        access.authorize(spec, method, key)
        check_names(request.args, frozenset())
        body = _json_body()
        instance = self._load(spec, access, key)
        data = check_body(spec, body, mode, access, key)
        self._apply(spec, access, method, data, instance, new=False)
        self.db.commit()
        return json_response(self._reread(spec, access, key))

    def delete(self, spec: ModelSpec, access: Access, key: Key) -> Response:
        access.authorize(spec, "DELETE", key)
        check_names(request.args, frozenset())
        instance = self._load(spec, access, key)
        self.db.delete(instance)
        self.db.commit()
        return empty(204)

    def put_many(self, spec: ModelSpec, access: Access) -> Response:
        access.authorize(spec, "PUT")
        check_names(request.args, frozenset({"filter"}))
        criteria = [parse_filter(text, spec, access) for text in request.args.getlist("filter")]
        data = check_body(spec, _json_body(), MANY, access)
        self.state.manager.check(spec.model, "PUT", dict(data.columns), None)
        if not data.columns:
            raise invalid_input([FieldError("", "sets no field")],
                                "The body sets no field: give the fields to change.")
        stmt = (sa.update(spec.model).where(*criteria).values(_sql_nulls(spec, data.columns))
                .options(*access.options()).execution_options(synchronize_session=False))
        result = self.db.execute(stmt)
        count = getattr(result, "rowcount", 0)
        self.db.commit()
        return json_response({"num_modified": count})

    def put_related(self, spec: ModelSpec, access: Access, key: Key, relation: RelationSpec,
                    target: ModelSpec) -> Response:
        access.authorize(spec, "PUT", key)
        check_names(request.args, frozenset())
        body = _json_body()
        instance = self._load(spec, access, key)
        data = check_body(spec, {relation.key: body}, UPDATE, access, key)
        self._apply(spec, access, "PUT", data, instance, new=False)
        self.db.commit()
        return empty(204)

    def _load(self, spec: ModelSpec, access: Access, key: Key) -> t.Any:
        instance = self.db.scalars(sa.select(spec.model).where(spec.where_key(key))
                                   .options(*access.options())).first()
        if instance is None:
            raise _missing(spec, key)
        return instance

    def _reread(self, spec: ModelSpec, access: Access, key: Key) -> dict[str, t.Any]:
        reader = Reader(self.db, access, ReadArgs(), access.options(), access.scoped)
        item = reader.one(spec, key)
        if item is None:  # written outside the caller's scope: show what was sent back
            raise Problem.of("forbidden", f"The {spec.name} was saved outside what you may"
                             " read.")
        return item

    def _apply(self, spec: ModelSpec, access: Access, method: str, data: Input,
               instance: t.Any, *, new: bool) -> None:
        """Resolve the relationships' keys, run the validation hooks, then set the fields."""
        errors: list[FieldError] = []
        related: dict[str, t.Any] = {}
        for name, value in data.relations.items():
            relation = spec.relations[name]
            target = self.state.specs[relation.target]
            keys = value if relation.many else ([] if value is None else [value])
            found = self._targets(target, access, keys)
            missing = [(i, k) for i, k in enumerate(keys) if k not in found]
            for index, missing_key in missing:
                field = f"{name}[{index}]" if relation.many else name
                errors.append(FieldError(field, f"no {target.name} has the key"
                                                f" {target.key_text(missing_key)!r}"))
            if missing:
                continue
            objects = [found[k] for k in keys]
            related[name] = objects if relation.many else (objects[0] if objects else None)
            if not relation.many and relation.local_key:
                given = tuple(data.columns.get(n, _UNSET) for n in relation.local_key)
                if _UNSET not in given:
                    expected = (None,) * len(given) if value is None else (
                        (value,) if len(target.pk) == 1 else tuple(value))
                    if given != expected:
                        errors.append(FieldError(name, "disagrees with "
                                                 + ", ".join(repr(n) for n in relation.local_key)))
        if errors:
            raise invalid_input(errors)
        self.state.manager.check(spec.model, method, {**data.columns, **related},
                                 None if new else instance)
        for name, value in _sql_nulls(spec, data.columns).items():
            setattr(instance, name, value)
        for name, value in related.items():
            setattr(instance, name, value)

    def _targets(self, target: ModelSpec, access: Access, keys: list[t.Any]
                 ) -> dict[t.Any, t.Any]:
        if not keys:
            return {}
        found = {}
        for instance in self.db.scalars(sa.select(target.model).where(target.key_in(keys))
                                        .options(*access.options())):
            values = tuple(getattr(instance, c.key) for c in target.pk)
            found[values[0] if len(values) == 1 else values] = instance
        return found


_UNSET = object()


def _sql_nulls(spec: ModelSpec, values: dict[str, t.Any]) -> dict[str, t.Any]:
    """JSON columns store ``None`` as JSON 'null'; the API means SQL NULL, as when omitted."""
    return {k: sa.null() if v is None and spec.columns[k].kind.name == "json" else v
            for k, v in values.items()}


def _members(spec: ModelSpec, key: Key, relation: RelationSpec, target: ModelSpec
             ) -> sa.ColumnElement[bool]:
    """The criterion "is in ``relation`` of the object ``key``", on the target model."""
    parent = aliased(spec.model)
    keys = (sa.select(*target.pk_attrs).select_from(parent)
            .join(getattr(parent, relation.key)).where(spec.where_key(key, parent))
            .correlate(None))
    return target.key_in(keys)


def _missing(spec: ModelSpec, key: Key) -> Problem:
    return not_found(f"No {spec.name} has the key {spec.key_text(key)!r}.")


def _quote(value: t.Any) -> str:
    return quote(str(getattr(value, "value", value)), safe="")


def _method() -> str:
    return "GET" if request.method == "HEAD" else request.method


def _check(method: str, allowed: list[str]) -> None:
    if method != "OPTIONS" and method not in allowed:
        raise MethodNotAllowed(valid_methods=[*allowed, *(["HEAD"] if "GET" in allowed else []),
                                              "OPTIONS"])


def _options(allowed: list[str]) -> Response:
    response = empty(204)
    methods = [*allowed, *(["HEAD"] if "GET" in allowed else []), "OPTIONS"]
    response.headers["Allow"] = ", ".join(methods)
    return response
