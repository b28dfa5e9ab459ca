"""The endpoints: one collection rule and one member rule under the prefix serve every model.

``/<collection>/`` and ``/<collection>/<key...>[/<relationship>[/<position>]]``
are resolved here rather than by one URL rule per model, so that models declared
after the manager (or added later) are served without touching the URL map.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import quote, urlencode

import orjson
import sqlalchemy as sa
from flask import Response, request, stream_with_context
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import RelationshipDirection, aliased, selectinload, with_loader_criteria
from sqlalchemy.orm.exc import FlushError, UnmappedColumnError
from sqlalchemy.orm.util import identity_key
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge

from ...util.convert import to_bool
from ...util.json import dumps
from . import export
from .columns import Invalid
from .conditions import IfMatch, etag_of, if_match, precondition_failed
from .problems import FieldError, Problem, from_exception, invalid_input, not_found, parameter
from .query import (
    MAX_OFFSET,
    ListArgs,
    ReadArgs,
    check_names,
    encode_cursor,
    parse_filter,
    parse_list,
    parse_read,
)
from .reader import Reader
from .sqljson import Unsupported, one_object, sql_page
from .validation import CREATE, MANY, REPLACE, UPDATE, Input, check_body

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .manager import APIState
    from .model import ColumnSpec, Key, ModelSpec, RelationSpec

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

    def filter_pattern(self, spec: ModelSpec) -> re.Pattern[str]:
        return self.state.filter_pattern(spec)

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
    return text_response(dumps(data), status, etag=etag, headers=headers)


def text_response(body: bytes, status: int = 200, *, etag: bool = False,
                  headers: t.Mapping[str, str] | None = None) -> Response:
    """A response of JSON written already (by orjson or by PostgreSQL): the ETag is its hash."""
    if etag:
        tag = etag_of(body)
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


def _urls(name: str, *dropped: str) -> t.Callable[[t.Any], str]:
    """This request's URL with the query parameter ``name`` set to a given value (last),
    without the parameters ``dropped``."""
    kept = urlencode([(k, v) for k, v in request.args.items(multi=True)
                      if k != name and k not in dropped])
    prefix = f"{request.base_url}?{kept}{'&' if kept else ''}"
    return lambda value: prefix + urlencode([(name, str(value))])


def _json_body() -> t.Any:
    mimetype = request.mimetype
    if mimetype != JSON and not (mimetype.startswith("application/") and
                                 mimetype.endswith("+json")):
        raise Problem.of("unsupported-media-type",
                         f"Send the body as JSON with the header 'Content-Type: {JSON}'"
                         f" (got {mimetype or 'none'!r}).")
    # Over MAX_CONTENT_LENGTH (413), a client gone or a body the server cannot read (400,
    # flasker.bodies): HTTP errors, answered as problems by the API's handler.
    data = request.get_data(cache=False)
    limit = request.max_content_length
    if (request.content_length is None and limit is not None and len(data) >= limit
            and request.environ["wsgi.input"].read(1)):
        # A chunked body: Werkzeug stops reading at the limit without saying so.
        raise RequestEntityTooLarge()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Problem.of("malformed-json", f"The body is not valid JSON: {e}.",
                         [FieldError("", str(e))]) from None


# -- dispatch ---------------------------------------------------------------------------------


class Endpoints:
    """Serves every model of one app's API."""

    #: Whether reads on PostgreSQL may have their JSON written by the database (``sqljson``);
    #: the tests turn it off to compare the two paths' documents.
    sql_json: t.ClassVar[bool] = True

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
        if "DELETE" in spec.options.methods and spec.options.allow_delete_many:
            allowed.append("DELETE")
        _check(method, allowed)
        access = Access(self.state)
        if method == "OPTIONS":
            return _options(allowed)
        if method == "GET":
            if _wants_csv():
                return self.export_csv(spec, access)
            return self.list_items(spec, access)
        if method == "POST":
            return self.create(spec, access)
        if method == "DELETE":
            return self.delete_many(spec, access)
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
        read = parse_list(_read_args(), spec, self.state.limits, access)
        return self._page(spec, access, read, [])

    def get(self, spec: ModelSpec, access: Access, key: Key) -> Response:
        access.authorize(spec, "GET", key)
        read = parse_read(request.args, spec, self.state.limits, access)
        body = self._object_body(spec, access, read, key)
        if body is None:
            raise _missing(spec, key)
        return text_response(body, etag=True)

    def _object_body(self, spec: ModelSpec, access: Access, read: ReadArgs, key: Key
                     ) -> bytes | None:
        """The JSON of the object ``key`` (``None`` if not found), by PostgreSQL if it can."""
        reader = Reader(self.db, access, read, access.options(), access.scoped)
        if self.sql_json:
            written = one_object(reader, spec, key)
            if not isinstance(written, Unsupported):
                return written
        item = reader.one(spec, key)
        return None if item is None else dumps(item)

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
        body = self._object_body(target, access, single, child)
        if body is None:  # gone since the key was read
            raise not_found(f"{spec.name} {spec.key_text(key)!r} has no {relation.key}.")
        return text_response(body, etag=True)

    def position(self, spec: ModelSpec, access: Access, key: Key, relation: RelationSpec,
                 target: ModelSpec, text: str) -> Response:
        access.authorize(spec, "GET", key)
        access.authorize(target, "GET")
        # ASCII digits only: str.isdigit() admits '²', which int() refuses.
        if not (text.isascii() and text.isdigit()) or not text.strip("0"):
            raise not_found(f"Positions in {spec.name}.{relation.key} count from 1,"
                            f" not {_shorten(text)!r}.")
        check_names(request.args, frozenset({"depth", "fields"}))
        self._require(spec, access, key)
        digits = text.lstrip("0")
        # Past the largest offset a database takes (64 bits) no list reaches: nothing is
        # there, as past its end. Measured before int(), which refuses 4,300 digits.
        if len(digits) > len(str(MAX_OFFSET)) or int(digits) - 1 > MAX_OFFSET:
            raise not_found(f"{spec.name} {spec.key_text(key)!r} has no {relation.key} at"
                            f" position {_shorten(digits)}: no list is that long.")
        read = parse_list(request.args, target, self.state.limits, access,
                          default_order=relation.order_by)
        reader = Reader(self.db, access, read, access.options(), access.scoped)
        page = reader.page(target, [_members(spec, key, relation, target)], read.order,
                           read.order_by(), 1, int(digits) - 1)
        if not page.items:
            raise not_found(f"{spec.name} {spec.key_text(key)!r} has no {relation.key} at"
                            f" position {text}.")
        return json_response(page.items[0], etag=True)

    def _page(self, spec: ModelSpec, access: Access, read: ListArgs,
              extra: list[sa.ColumnElement[bool]]) -> Response:
        options = access.options()
        criteria = [*read.criteria, *extra]
        total = counting = None
        if read.total:
            def count() -> sa.Select[t.Any]:
                counted = sa.select(*spec.pk_attrs).where(*criteria).subquery()
                return sa.select(sa.func.count()).select_from(counted).options(*options)

            counting = count() if criteria or options else spec.statement(("count",), count)
        reader = Reader(self.db, access, read, options, access.scoped)
        window = [*read.window(), *extra]
        # The SQL path counts in its page's statement; the Python path's count comes first.
        written = (sql_page(reader, spec, window, read.order, read.order_by(), read.limit,
                            read.offset, not window, total=counting) if self.sql_json else None)
        if written is None and counting is not None:
            # On the session's connection, as the reader's selects: compiled by the ORM (for
            # the scopes), without the ORM's result handling.
            total = self.db.connection().execute(counting).scalar()
        if written is not None:
            total = written.total
            items = b"[" + written.items.encode() + b"]"
            has_more, last_order = written.has_more, written.last_order
        else:
            page = reader.page(spec, window, read.order, read.order_by(), read.limit,
                               read.offset)
            items, has_more, last_order = dumps(page.items), page.has_more, page.last_order
        # The envelope as orjson writes {"items": ..., "limit": ..., ...}: compact, in order.
        body = [b'{"items":', items, b',"limit":', str(read.limit).encode()]
        if total is not None:
            body += [b',"total":', str(total).encode()]
        links = []
        if read.keyset:
            token = (encode_cursor(read, last_order)
                     if has_more and last_order is not None else None)
            body += [b',"next_cursor":', dumps(token)]
            # An offset given with the cursor skipped items after it, once: not on every page.
            url = _urls("cursor", "offset")
            links.append(f'<{url("")}>; rel="first"')
            if token is not None:
                links.append(f'<{url(token)}>; rel="next"')
        else:
            body += [b',"offset":', str(read.offset).encode()]
            url = _urls("offset")
            links.append(f'<{url(0)}>; rel="first"')
            if read.offset:
                links.append(f'<{url(max(0, read.offset - read.limit))}>; rel="prev"')
            if has_more:
                links.append(f'<{url(read.offset + read.limit)}>; rel="next"')
            if total is not None:
                last = max(0, (total - 1) // read.limit * read.limit)
                links.append(f'<{url(last)}>; rel="last"')
        body.append(b"}")
        return text_response(b"".join(body), etag=True, headers={"Link": ", ".join(links)})

    def _require(self, spec: ModelSpec, access: Access, key: Key) -> None:
        found = self.db.execute(sa.select(*spec.pk_attrs).where(spec.where_key(key))
                                .options(*access.options())).first()
        if found is None:
            raise _missing(spec, key)

    # -- writes -----------------------------------------------------------------------------

    def create(self, spec: ModelSpec, access: Access) -> Response:
        access.authorize(spec, "POST")
        upsert = _merge_duplicates()
        check_names(request.args, frozenset({"on_conflict"}))
        target = _conflict_target(spec)  # checked always; used by an upsert only
        body = _json_body()
        if upsert or isinstance(body, list):
            return self.write_many(spec, access, body, target if upsert else None)
        data = check_body(spec, body, CREATE, access)
        instance = spec.model()
        self._apply(spec, access, "POST", data, instance, new=True)
        self.db.add(instance)
        self.db.flush()
        values = tuple(getattr(instance, c.key) for c in spec.pk)
        key = values[0] if len(values) == 1 else values
        item = self._reread_and_commit(spec, access, key)
        return json_response(item, 201, headers={"Location": self._location(spec, values)})

    def write(self, spec: ModelSpec, access: Access, key: Key, mode: str) -> Response:
        method = "PUT" if mode == REPLACE else "PATCH"
        access.authorize(spec, method, key)
        check_names(request.args, frozenset())
        expected = if_match()
        instance = self._load(spec, access, key, lock=expected is not None)
        self._check_if_match(expected, lambda: self._object_tag(spec, access, key), spec, key)
        body = _json_body()  # after the precondition, as RFC 9110 (13.2.1) orders them
        data = check_body(spec, body, mode, access, key)
        self._apply(spec, access, method, data, instance, new=False)
        response = json_response(self._reread_and_commit(spec, access, key))
        response.set_etag(etag_of(response.get_data()))  # the next If-Match, without a GET
        return response

    def delete(self, spec: ModelSpec, access: Access, key: Key) -> Response:
        access.authorize(spec, "DELETE", key)
        check_names(request.args, frozenset())
        expected = if_match()
        instance = self._load(spec, access, key, lock=expected is not None)
        self._check_if_match(expected, lambda: self._object_tag(spec, access, key), spec, key)
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
        expected = if_match()
        instance = self._load(spec, access, key, lock=expected is not None)
        self._check_if_match(expected, lambda: self._related_tag(spec, access, key, relation,
                                                                 target), spec, key)
        body = _json_body()
        data = check_body(spec, {relation.key: body}, UPDATE, access, key)
        self._apply(spec, access, "PUT", data, instance, new=False)
        self.db.commit()
        return empty(204)

    # -- bulk writes and export --------------------------------------------------------------

    def write_many(self, spec: ModelSpec, access: Access, body: t.Any,
                   target: list[ColumnSpec] | None) -> Response:
        """POST of an array (create each), or with ``Prefer: resolution=merge-duplicates``.

        One transaction, all or nothing: every item is validated first (every fault
        reported, as ``[index].field``), then each is written and flushed in turn, so
        that a refusal or a conflict names its item. An upsert updates the object whose
        conflict target (the key, or ``?on_conflict=`` columns of a unique constraint)
        equals the item's, given fields only (PATCH for hooks), and creates the others.
        """
        single = not isinstance(body, list)
        items: list[t.Any] = [body] if single else body
        limit = self.state.max_bulk_items
        if len(items) > limit:
            # A 422 rather than a 413: the body is not too large to read, its array is too
            # long for one transaction (and a 413 speaks of MAX_CONTENT_LENGTH).
            raise invalid_input([FieldError("", f"has more than {limit} items")],
                                f"The array holds {len(items):,} objects; one request writes"
                                f" at most {limit:,}: send them in several requests.")
        if not items:
            raise invalid_input([FieldError("", "is an empty array")],
                                f"The array is empty: send at least one {spec.name}.")
        errors: list[FieldError] = []
        checked: list[Input] = []
        for index, item in enumerate(items):
            try:
                checked.append(check_body(spec, item, CREATE, access))
            except Problem as e:
                errors += _indexed(e.errors, None if single else index)
        if errors:
            raise _refused(errors, single)
        existing: dict[tuple[t.Any, ...], t.Any] = {}
        conflicts: list[tuple[t.Any, ...] | None] = [None] * len(checked)
        if target is not None:
            seen: dict[tuple[t.Any, ...], int] = {}
            for index, data in enumerate(checked):
                values = tuple(data.columns.get(c.key) for c in target)
                if None in values:  # NULL is never a conflict: a new object
                    continue
                if values in seen:
                    named = ", ".join(repr(c.key) for c in target)
                    raise Problem.of("conflict", f"Items {seen[values]} and {index} of the array"
                                     f" have the same {named}: merge them. Nothing was written.",
                                     [FieldError(f"[{index}]", f"has the same {named} as item"
                                                              f" {seen[values]}")])
                seen[values] = index
                conflicts[index] = values
            existing = self._existing(spec, access, target,
                                      [v for v in conflicts if v is not None])
        # New objects only (no upsert): all added, then one flush, which PostgreSQL takes
        # as one INSERT of many rows rather than a round trip each. Should the database
        # refuse it, everything is rolled back and written again an item at a time, so that
        # the fault names its item as it does for an upsert.
        batch = target is None and not single
        try:
            instances, created = self._write_items(spec, access, checked, conflicts, existing,
                                                   single, each=not batch)
            if batch:
                self.db.flush()
        except (sa_exc.IntegrityError, sa_exc.DataError, FlushError):
            if not batch:
                raise
            self.db.rollback()
            instances, created = self._write_items(spec, access, checked, conflicts, existing,
                                                   single, each=True)
        written = [tuple(getattr(instance, c.key) for c in spec.pk) for instance in instances]
        out = self._reread_many(spec, access, written)
        self.db.commit()
        locations = [self._location(spec, values) for values in written]
        status = 201 if created else 200
        headers = ({"Preference-Applied": "resolution=merge-duplicates"} if target is not None
                   else {})
        if single:
            return json_response(out[0], status, headers={**headers, "Location": locations[0]})
        return json_response({"items": out, "locations": locations}, status, headers=headers)

    def _write_items(self, spec: ModelSpec, access: Access, checked: list[Input],
                     conflicts: list[tuple[t.Any, ...] | None],
                     existing: dict[tuple[t.Any, ...], t.Any], single: bool, *, each: bool
                     ) -> tuple[list[t.Any], int]:
        """The objects of ``checked``, in order, and how many are new; ``each``: flushed each.

        Without ``each``, a database error is left to the caller (it may come from the
        flush of an earlier item, the ORM flushing before a query), which writes again.
        """
        instances: list[t.Any] = []
        created = 0
        for index, data in enumerate(checked):
            conflict = conflicts[index]
            found = existing.get(conflict) if conflict is not None else None
            new = found is None
            instance = spec.model() if new else found
            try:
                if not new:
                    access.authorize(spec, "PATCH", _key_of(spec, instance))
                    _keep_key(spec, data, instance)
                self._apply(spec, access, "POST" if new else "PATCH", data, instance, new=new)
                if new:
                    _check_new_key(self.db, spec, data)
                    self.db.add(instance)
                if each:
                    self.db.flush()
            except Problem as e:
                if single:
                    raise
                raise _at_item(e, index) from None
            except (sa_exc.IntegrityError, sa_exc.DataError) as e:
                if not each:
                    raise
                problem = from_exception(e)
                raise (problem if single else _at_item(problem, index)) from None
            created += new
            instances.append(instance)
        return instances, created

    def _existing(self, spec: ModelSpec, access: Access, target: list[ColumnSpec],
                  values: list[tuple[t.Any, ...]]) -> dict[tuple[t.Any, ...], t.Any]:
        """The objects (in the caller's scope) whose ``target`` columns hold ``values``."""
        if not values:
            return {}
        attrs = [c.attr for c in target]
        where = (attrs[0].in_([v[0] for v in values]) if len(attrs) == 1
                 else sa.tuple_(*attrs).in_(values))
        found = {}
        for instance in self.db.scalars(sa.select(spec.model).where(where)
                                        .options(*access.options())):
            found[tuple(getattr(instance, c.key) for c in target)] = instance
        return found

    def _reread_many(self, spec: ModelSpec, access: Access, written: list[tuple[t.Any, ...]]
                     ) -> list[dict[str, t.Any]]:
        """The objects of ``written`` keys as the API shows them, in that order, read at once."""
        keys = [v[0] if len(v) == 1 else v for v in written]
        reader = Reader(self.db, access, ReadArgs(), access.options(), access.scoped)
        order = [(c, False) for c in spec.pk]
        page = reader.page(spec, [spec.key_in(keys)], order, [c.attr.asc() for c in spec.pk],
                           len(keys), 0)
        shown = [(c.key, c.kind.to_json) for c in spec.pk]
        by_key = {tuple(item[name] for name, _f in shown): item for item in page.items}
        out = []
        for index, values in enumerate(written):
            item = by_key.get(tuple(v if f is None or v is None else f(v)
                                    for (_n, f), v in zip(shown, values, strict=True)))
            if item is None:  # written outside the caller's scope: nothing is kept
                raise Problem.of("forbidden", f"Item {index} would be saved outside what you"
                                 " may read; nothing was written.")
            out.append(item)
        return out

    def _location(self, spec: ModelSpec, values: tuple[t.Any, ...]) -> str:
        """The URL of the object whose key columns hold ``values``."""
        return (f"{request.url_root.rstrip('/')}{self.state.prefix}/{spec.collection}/"
                + "/".join(_quote(v) for v in values))

    def delete_many(self, spec: ModelSpec, access: Access) -> Response:
        """DELETE of the objects matching the filters (every one with ``?all=true``).

        One transaction: the objects are loaded (in the caller's scope) and deleted as a
        single DELETE deletes (the ORM's cascades), each authorized with its key.
        """
        access.authorize(spec, "DELETE")
        check_names(request.args, frozenset({"filter", "all"}))
        texts = request.args.getlist("filter")
        every = False
        if "all" in request.args:
            try:
                every = to_bool(request.args["all"])
            except ValueError as e:
                raise parameter("all", f"is {e}") from None
        if not texts and not every:
            raise parameter("filter", "is missing",
                            f"Deleting from '{spec.collection}' takes at least one 'filter' (as in"
                            f" '?filter=id:eq:1'); to delete every {spec.name}, add '?all=true'.")
        criteria = [parse_filter(text, spec, access) for text in texts]
        instances = self.db.scalars(sa.select(spec.model).where(*criteria)
                                    .options(*access.options(), *_dependents(spec))).all()
        for instance in instances:
            access.authorize(spec, "DELETE", _key_of(spec, instance))
            self.db.delete(instance)
        # Flushed in one go: the ORM orders the deletes (children first in a tree).
        self.db.flush()
        self.db.commit()
        return json_response({"num_deleted": len(instances)})

    def export_csv(self, spec: ModelSpec, access: Access) -> Response:
        """Every (filtered, sorted) object as CSV, streamed as it is read.

        Read on a session of its own, closed when the response ends: the request's
        session is closed with the request, before a streamed body is sent.
        """
        access.authorize(spec, "GET")
        args = _read_args()
        read = parse_list(args, spec, self.state.limits, access)
        # Every matching object, unless a window is asked for; relationships are keys, and
        # there is no body to hold a total: 'depth' and 'total' change nothing.
        read.depth = 0
        limit = read.limit if "limit" in args else None
        offset = read.offset
        body: t.Iterable[bytes] = iter(())  # HEAD: the headers alone, nothing is read
        if request.method != "HEAD":
            db = self.state.project.db.session_factory()
            try:
                reader = Reader(db, access, read, access.options(), access.scoped)
                names, batches = reader.stream(spec, read.window(), read.order_by(),
                                               export.BATCH, limit, offset)
            except BaseException:
                db.close()
                raise
            body = _Stream(stream_with_context(export.chunks(names, batches)), db.close)
        response = Response(body, mimetype=export.MIMETYPE)
        response.mimetype_params.update({"charset": "utf-8", "header": "present"})
        response.headers.set("Content-Disposition", "attachment",
                             filename=f"{spec.collection}.csv")
        return response

    def _load(self, spec: ModelSpec, access: Access, key: Key, *, lock: bool = False) -> t.Any:
        """The object to write; ``lock``: no other write may change it until this one ends."""
        stmt = sa.select(spec.model).where(spec.where_key(key)).options(*access.options())
        if lock:
            _write_lock(self.db)
            # Read again, locked: another write may have committed while this one waited.
            stmt = stmt.with_for_update(of=spec.model).execution_options(populate_existing=True)
        instance = self.db.scalars(stmt).first()
        if instance is None:
            raise _missing(spec, key)
        return instance

    def _check_if_match(self, expected: IfMatch | None, current: t.Callable[[], str | None],
                        spec: ModelSpec, key: Key) -> None:
        """``If-Match`` (RFC 9110, 13.1.1): a 412 unless it names the current ETag.

        Called with the object loaded and locked (:meth:`_load`), so that the ETag
        compared is the one of the state this write changes. ``*`` asks only that the
        object exists, which a 404 has answered already.
        """
        if expected is not None and not expected.any and current() not in expected.strong:
            raise precondition_failed(f"The {spec.name} {spec.key_text(key)!r}")

    def _object_tag(self, spec: ModelSpec, access: Access, key: Key) -> str | None:
        """The ETag that a GET of the object without query parameters gives now."""
        body = self._object_body(spec, access, ReadArgs(), key)
        return None if body is None else etag_of(body)

    def _related_tag(self, spec: ModelSpec, access: Access, key: Key, relation: RelationSpec,
                     target: ModelSpec) -> str | None:
        """The ETag that a GET of the relationship without query parameters gives now."""
        read = parse_list(MultiDict(), target, self.state.limits, access,
                          default_order=relation.order_by)
        tags = self._page(target, access, read, [_members(spec, key, relation, target)])
        return tags.get_etag()[0]

    def _reread_and_commit(self, spec: ModelSpec, access: Access, key: Key
                           ) -> dict[str, t.Any]:
        """The written object as a GET shows it, read in the write's transaction, committed.

        Read before the commit: after it, the read would take the connection from the pool
        again (a ping, a new transaction), a third of a write's round trips.
        """
        self.db.flush()
        reader = Reader(self.db, access, ReadArgs(), access.options(), access.scoped)
        item = reader.one(spec, key)
        self.db.commit()
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
            # A 409, as PostgREST answers a foreign-key violation: the body is valid, what it
            # refers to is not there (or it names two different objects), which no schema can
            # say and which may change with the data, as a unique key's conflict does.
            named = ", ".join(f"'{e.field}' {e.reason}" for e in errors[:5])
            raise Problem.of("conflict", f"The {spec.name} refers to what is not there: {named}."
                             " Create or name existing objects, and give a foreign key and its"
                             " relationship only when they agree.", errors)
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


def _shorten(text: str, width: int = 40) -> str:
    """``text``, cut to ``width`` characters with an ellipsis, for a message."""
    return text if len(text) <= width else text[:width - 1] + "…"


def _write_lock(session: Session) -> None:
    """On SQLite, which has no row locks, take the database's write lock now.

    As ``BEGIN IMMEDIATE`` (see ``flasker.lease``): a second write waits here until the
    first commits, then reads what it wrote. Elsewhere ``FOR UPDATE`` locks the row.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    # pysqlite begins its own transaction at the first write only: none is open before.
    if not getattr(driver, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


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


# -- bulk writes and export -------------------------------------------------------------------


def _read_args() -> MultiDict[str, str]:
    """The query parameters of a read of a collection, without ``format``."""
    if "format" not in request.args:
        return request.args
    args = request.args.copy()
    args.poplist("format")
    return args


def _wants_csv() -> bool:
    """Whether a read of a collection asks for CSV: ``?format=csv``, else the Accept header."""
    given = request.args.getlist("format")
    if given:
        if len(given) > 1 or given[0] not in ("csv", "json"):
            raise parameter("format", "must be 'csv' or 'json'",
                            "The query parameter 'format' must be 'csv' or 'json' (once).")
        return given[0] == "csv"
    return request.accept_mimetypes.best_match([JSON, export.MIMETYPE]) == export.MIMETYPE


def _merge_duplicates() -> bool:
    """Whether the request says ``Prefer: resolution=merge-duplicates`` (RFC 7240).

    Other preferences are ignored, as RFC 7240 lets a server do.
    """
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            name, _eq, value = preference.split(";", 1)[0].partition("=")
            if (name.strip().lower() == "resolution"
                    and value.strip().strip('"').lower() == "merge-duplicates"):
                return True
    return False


def unique_sets(spec: ModelSpec) -> list[tuple[str, ...]]:
    """The key, then the columns of each unique constraint or index, as attribute names.

    These are what an upsert may match on (``on_conflict``), in a stable order.
    """
    mapper = sa.inspect(spec.model)
    table = t.cast(sa.Table, mapper.local_table)
    groups = [c.columns for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    groups += [i.columns for i in table.indexes if i.unique]
    key = tuple(c.key for c in spec.pk)
    found: set[tuple[str, ...]] = set()
    for columns in groups:
        try:
            names = tuple(mapper.get_property_by_column(c).key for c in columns)
        except UnmappedColumnError:  # not mapped: no conflict target of the API
            continue
        if all(n in spec.columns for n in names) and names != key:
            found.add(names)
    return [key, *sorted(found)]


def _conflict_target(spec: ModelSpec) -> list[ColumnSpec]:
    """The columns an upsert matches on: ``?on_conflict=a,b``, else the key."""
    text = request.args.get("on_conflict")
    if text is None:
        return list(spec.pk)
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    sets = unique_sets(spec)
    for chosen in sets:
        if frozenset(chosen) == names:
            return [spec.columns[n] for n in chosen]
    choices = "; ".join(",".join(s) for s in sets)
    raise parameter("on_conflict", "names no unique set of columns",
                    f"The query parameter 'on_conflict' must name the key or the columns of a"
                    f" unique constraint of {spec.name}: {choices}.")


def _keep_key(spec: ModelSpec, data: Input, instance: t.Any) -> None:
    """An upsert matched ``instance``: the key may be repeated in the item, not changed."""
    for column in spec.pk:
        if column.key in data.columns:
            if data.columns.pop(column.key) != getattr(instance, column.key):
                raise Problem.of("conflict", f"The item matches the {spec.name}"
                                 f" {spec.key_text(_key_of(spec, instance))!r}, whose key it"
                                 " would change: leave the key out, or give the same.",
                                 [FieldError(column.key, "is the key and cannot be changed")])


def _indexed(errors: list[FieldError], index: int | None) -> list[FieldError]:
    """``errors`` of the item at ``index`` of an array, as ``[index].field``."""
    if index is None:
        return errors
    return [FieldError(f"[{index}].{e.field}" if e.field else f"[{index}]", e.reason)
            for e in errors]


def _refused(errors: list[FieldError], single: bool) -> Problem:
    problem = invalid_input(errors)
    if not single:
        problem.detail += " Nothing was written."
    return problem


def _at_item(problem: Problem, index: int) -> Problem:
    """``problem``, raised by the item at ``index`` of an array, naming it."""
    return Problem(problem.status, problem.title,
                   f"Item {index} of the array: {problem.detail} Nothing was written.",
                   _indexed(problem.errors, index), problem.headers, problem.type)


def _check_new_key(db: t.Any, spec: ModelSpec, data: Input) -> None:
    """A 409 when the new object's key is that of one the session holds already.

    The database would refuse it too (a unique violation, 409), but only after the
    session refused to hold two objects with one identity: as when a new node names
    itself, by the same key, as its parent.
    """
    if not all(c.key in data.columns for c in spec.pk):
        return
    values = tuple(data.columns[c.key] for c in spec.pk)
    if identity_key(spec.model, values) in db.identity_map:
        key = values[0] if len(values) == 1 else values
        raise Problem.of("conflict", f"A {spec.name} with the key {spec.key_text(key)!r} exists"
                         " already: give another key, or update that one.",
                         [FieldError(c.key, "is taken") for c in spec.pk])


def _key_of(spec: ModelSpec, instance: t.Any) -> Key:
    values = tuple(getattr(instance, c.key) for c in spec.pk)
    return values[0] if len(values) == 1 else values


def _dependents(spec: ModelSpec) -> list[t.Any]:
    """Loaders of what deleting an object changes (children, association rows), in bulk.

    ``Session.delete`` empties or deletes them as a single DELETE does; loaded for all the
    objects at once, they cost one statement per relationship rather than one per object.
    """
    mapper = sa.inspect(spec.model)
    return [selectinload(getattr(spec.model, r.key)) for r in mapper.relationships
            if not r.viewonly and r.direction is not RelationshipDirection.MANYTOONE]


class _Stream:
    """A streamed body that calls ``release`` (closing a session) once it is sent.

    Released at the last chunk, or when the server closes the body first (the client
    went away): a session left open would hold its transaction, and its locks.
    """

    def __init__(self, chunks: t.Iterator[bytes], release: t.Callable[[], None]) -> None:
        self.chunks = chunks
        self.release = release

    def __iter__(self) -> t.Iterator[bytes]:
        try:
            yield from self.chunks
        finally:
            self.release()

    def close(self) -> None:
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        finally:
            self.release()
