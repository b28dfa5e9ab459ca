"""The API described: ``/api/`` (a listing) and ``/api/openapi.json`` (OpenAPI 3.1)."""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

from ... import __version__
from .conditions import PATTERN as IF_MATCH_PATTERN
from .export import MIMETYPE as CSV
from .grammar import (
    GROUPS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_HOPS,
    MAX_FILTER_LENGTH,
    OPERATORS,
    filter_pattern,
)
from .model import ANY_KEY_SCHEMA, KEY_SEGMENT_SCHEMA
from .problems import CATALOGUE, MIMETYPE, TYPE_PREFIX
from .query import MAX_OFFSET
from .views import unique_sets

if t.TYPE_CHECKING:
    from .columns import Kind
    from .manager import APIState
    from .model import ModelSpec, RelationSpec

REF = "#/components/schemas/"
PROBLEM = {"$ref": REF + "Problem"}
_ERRORS = {
    "read": (400, 403, 404),
    "write": (400, 403, 404, 409, 413, 415, 422),
}


@dataclass(frozen=True)
class Security:
    """How callers sign in to the API, as an auth extension tells the document.

    An extension whose state in ``app.extensions`` has an ``openapi_security()`` method
    returning one (the auth extension's does) gives the document its ``securitySchemes``,
    the ``security`` of every operation, and its 401 and 403 responses.
    """

    #: The ``securitySchemes`` of the document's components.
    schemes: dict[str, dict[str, t.Any]]
    #: The requirements (any one of them) of a read, and of a write.
    read: list[dict[str, list[str]]]
    write: list[dict[str, list[str]]]
    #: Whether a request without credentials is refused (401).
    required: bool


#: What the auth extension answers when it refuses a request (401, or 403 on a failed CSRF
#: check): problem details with the refusal's code, without the API's 'errors'.
REFUSAL = {
    "type": "object", "required": ["type", "title", "status", "detail", "code"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "code": {"type": "string"}},
}


def _security(state: APIState) -> Security | None:
    for extension in state.project.app.extensions.values():
        describe = getattr(extension, "openapi_security", None)
        if callable(describe):
            found = describe()
            if isinstance(found, Security):
                return found
    return None


def _secure(document: dict[str, t.Any], security: Security) -> None:
    """Add the auth extension's schemes, requirements and refusals to every operation."""
    document["components"]["securitySchemes"] = security.schemes
    document["components"]["schemas"]["Refusal"] = REFUSAL
    document["security"] = security.read
    refused = {"description": "Refused by the auth extension.",
               "content": {MIMETYPE: {"schema": {"$ref": REF + "Refusal"}}}}
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            write = method not in ("get", "head")
            operation["security"] = security.write if write else security.read
            responses = operation["responses"]
            if security.required:
                responses["401"] = {**refused, "description": "No valid credentials.",
                                    "headers": {"WWW-Authenticate": {"schema": {
                                        "type": "string"}}}}
            if write:  # a signed-in browser's write without its CSRF header
                responses["403"] = {"description": "Forbidden.", "content": {MIMETYPE: {
                    "schema": {"anyOf": [PROBLEM, {"$ref": REF + "Refusal"}]}}}}


def listing(state: APIState) -> dict[str, t.Any]:
    """Every endpoint with its methods, columns, properties and relationships."""
    prefix = state.prefix
    endpoints = []
    for spec in state.specs.values():
        item = _item_path(spec)
        methods = list(spec.options.methods)
        relationships = {}
        for name, relation in _relations(state, spec):
            target = state.specs[relation.target]
            relationships[name] = {
                "collection": target.collection, "many": relation.many,
                "url": f"{prefix}{item}/{name}{'/' if relation.many else ''}",
                "writable": relation.writable and relation.many and "PUT" in methods,
            }
        endpoints.append({
            "name": spec.name,
            "collection": spec.collection,
            "url": f"{prefix}/{spec.collection}/",
            "item_url": f"{prefix}{item}",
            "methods": methods,
            "allow_put_many": spec.options.allow_put_many,
            "key": [c.key for c in spec.pk],
            "columns": {
                c.key: {"type": c.kind.name, "nullable": c.nullable,
                        "primary_key": c.primary_key, "writable": c.writable,
                        "required": c.required}
                for c in spec.columns.values()
            },
            "properties": list(spec.properties),
            "relationships": relationships,
        })
    return {"endpoints": endpoints, "openapi": f"{prefix}/openapi.json",
            "filter_operators": list(OPERATORS)}


def _relations(state: APIState, spec: ModelSpec) -> list[tuple[str, RelationSpec]]:
    return [(n, r) for n, r in spec.relations.items() if r.target in state.specs]


def _item_path(spec: ModelSpec) -> str:
    return f"/{spec.collection}/" + "/".join("{" + c.key + "}" for c in spec.pk)


def document(state: APIState, script_root: str) -> dict[str, t.Any]:
    """The OpenAPI 3.1 document of every endpoint, parameter and schema."""
    names = _schema_names(state)
    schemas: dict[str, t.Any] = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details. Types: " + ", ".join(
                f"{TYPE_PREFIX}{slug} ({status})" for slug, (status, _t) in CATALOGUE.items()),
            "required": ["type", "title", "status", "detail", "errors"],
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"},
                "status": {"type": "integer"}, "detail": {"type": "string"},
                "errors": {"type": "array", "items": {
                    "type": "object", "required": ["field", "reason"],
                    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                }},
            },
        },
        "Modified": {"type": "object", "required": ["num_modified"],
                     "properties": {"num_modified": {"type": "integer", "minimum": 0}},
                     "additionalProperties": False},
        "Index": {"type": "object"},
    }
    paths: dict[str, t.Any] = {
        "/": {"get": {"operationId": "index", "summary": "List every endpoint.",
                      "responses": {"200": _json({"$ref": REF + "Index"}),
                                    "304": {"description": "Not modified."},
                                    "default": _problem()}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                                  "responses": {"200": _json({"type": "object"}),
                                                "304": {"description": "Not modified."},
                                                "default": _problem()}}},
    }
    for spec in state.specs.values():
        name = names[spec.collection]
        schemas.update(_schemas(state, spec, name, names))
        paths.update(_paths(state, spec, name, names))
    out = {
        "openapi": "3.1.0",
        "info": {"title": f"{state.project.name} API", "version": __version__,
                 "description": _DESCRIPTION},
        "servers": [{"url": script_root + state.prefix}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "parameters": {**_parameters(state), **_filter_parameters(state)}},
    }
    security = _security(state)
    if security is not None:
        _secure(out, security)
    return out


_DESCRIPTION = (
    "Every model as JSON. Read with depth, filters (filter=PATH:OP:VALUE, OP one of "
    + ", ".join(OPERATORS) + "; or(...), and(...), not(...) groups), sort, fields,"
    " limit/offset or cursor paging. Every error is application/problem+json (RFC 9457)."
)
_FILTER = (
    "PATH:OP:VALUE, repeatable (all must hold); PATH is a column or crosses relationships"
    f" (house.address), at most {MAX_FILTER_HOPS} of them; OP is one of " + ", ".join(OPERATORS)
    + " (like and ilike on text only; is_null on every column and relationship). Or a group: "
    + ", ".join(f"{g}(...)" for g in GROUPS) + " of conditions and groups separated by commas"
    f" without blanks (not takes one), nested at most {MAX_FILTER_DEPTH} deep (a not(...) of"
    " one condition counts no level), as in or(age:lt:2,not(house:is_null)); at most"
    f" {MAX_FILTER_LENGTH} characters. In a group"
    " a value ends at ',' or ')': a value holding them is a JSON string (name:eq:\"a,b\"), an"
    " 'in' list a JSON array (age:in:[1,2]). Each value is spelt one way, as the pattern"
    " says: booleans true/false/yes/no/on/off/1/0, numbers without leading zeros, dates"
    " YYYY-MM-DD, date-times with an optional offset; the server refuses any other filter."
)
def _schema_names(state: APIState) -> dict[str, str]:
    counts: dict[str, int] = {}
    for spec in state.specs.values():
        counts[spec.name] = counts.get(spec.name, 0) + 1
    reserved = {"Problem", "Modified", "Index", "Refusal"}
    return {spec.collection: spec.name if counts[spec.name] == 1 and spec.name not in reserved
            else spec.collection for spec in state.specs.values()}


def _nullable(schema: dict[str, t.Any], nullable: bool) -> dict[str, t.Any]:
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


def _shown(kind: Kind) -> dict[str, t.Any]:
    """The schema of a value in output: an integer without its column type's range.

    What was stored is shown, and it may be past the range: SQLite's 64-bit autoincrement
    key in an INTEGER column, an expression (``id * 10``). Input keeps the range.
    """
    return {k: v for k, v in kind.schema().items() if k not in ("minimum", "maximum")}


def _key_schema(spec: ModelSpec) -> dict[str, t.Any]:
    if len(spec.pk) == 1:
        return _shown(spec.pk[0].kind)
    return {"type": "object", "required": [c.key for c in spec.pk],
            "properties": {c.key: _shown(c.kind) for c in spec.pk},
            "additionalProperties": False}


def _schemas(state: APIState, spec: ModelSpec, name: str, names: dict[str, str]
             ) -> dict[str, t.Any]:
    output: dict[str, t.Any] = {}
    writable: dict[str, t.Any] = {}
    for column in spec.columns.values():
        schema = dict(_nullable(_shown(column.kind), column.nullable))
        if column.doc:
            schema["description"] = column.doc
        if not column.writable:
            schema["readOnly"] = True
        output[column.key] = schema
        if column.writable:
            schema = column.kind.schema(for_input=True)
            if column.primary_key and column.kind.name in ("string", "enum"):
                schema = {**schema, **KEY_SEGMENT_SCHEMA}  # a new key must be a URL segment
            elif column.primary_key and column.kind.name == "any":
                schema = ANY_KEY_SCHEMA
            writable[column.key] = _nullable(schema, column.nullable)
    shown = [c.key for c in spec.columns.values()]  # every column, always
    sparse = dict(output)
    set_by: dict[str, tuple[str, ...]] = {}  # to-one relationship → its foreign key
    for relation_name, relation in _relations(state, spec):
        target_spec = state.specs[relation.target]
        target = names[target_spec.collection]
        ref = {"$ref": f"{REF}{target}.ref"}
        if "GET" not in target_spec.options.methods:
            continue  # never shown nor written: the target cannot be read
        if relation.writable:
            writable[relation_name] = ({"type": "array", "items": ref} if relation.many
                                       else {"anyOf": [ref, {"type": "null"}]})
            if not relation.many and relation.local_key:
                set_by[relation_name] = relation.local_key
        # The object first, then its key: a full object has required fields its key lacks,
        # so a generated client that tries each in turn reads an object as an object.
        either = [{"$ref": f"{REF}{target}"}, {"$ref": f"{REF}{target}.key"}]
        some = [{"$ref": f"{REF}{target}.sparse"}, {"$ref": f"{REF}{target}.key"}]
        for schemas, union in ((output, either), (sparse, some)):
            schemas[relation_name] = ({"type": "array", "items": {"anyOf": union}}
                                      if relation.many
                                      else {"anyOf": [*union, {"type": "null"}]})
        if not state.manager.may_refuse(target_spec.model, "GET"):
            shown.append(relation_name)  # else left out when an authorize hook says no
    for prop, schema in spec.properties.items():
        output[prop] = sparse[prop] = {**schema, "readOnly": True}
        shown.append(prop)
    required = [c.key for c in spec.columns.values() if c.required and c.writable]
    # A required foreign key may be left out when its relationship is given (not null).
    either_of: list[dict[str, t.Any]] = []
    for relation_name, local_key in set_by.items():
        if all(k in required for k in local_key):
            required = [k for k in required if k not in local_key]
            either_of.append({
                "if": {"required": [relation_name],
                       "properties": {relation_name: {"not": {"type": "null"}}}},
                "else": {"required": list(local_key)}})
    rules: dict[str, t.Any] = {"allOf": either_of} if either_of else {}
    key = _key_schema(spec)
    key_object = {"type": "object", "required": [c.key for c in spec.pk],
                  "properties": {c.key: c.kind.schema(for_input=True) for c in spec.pk}}
    # The key of an existing object is its URL's: a body may repeat it, never change it.
    existing = {k: {**v, "readOnly": True} if k in spec.columns and spec.columns[k].primary_key
                else v for k, v in writable.items()}
    return {
        name: {"type": "object", "properties": output, "required": shown,
               "additionalProperties": False},
        f"{name}.sparse": {"type": "object", "properties": sparse,
                           "required": [c.key for c in spec.pk], "additionalProperties": False,
                           "description": f"A {name} with the fields a 'fields' parameter chose"
                                          " (the key always)."},
        f"{name}.create": {"type": "object", "properties": writable, "required": required,
                           "additionalProperties": False, **rules},
        f"{name}.replace": {"type": "object", "properties": existing,
                            "required": [r for r in required
                                         if not spec.columns[r].primary_key],
                            "additionalProperties": False, **rules},
        f"{name}.update": {"type": "object", "properties": existing,
                           "additionalProperties": False},
        f"{name}.many": {"type": "object", "additionalProperties": False, "minProperties": 1,
                         "properties": {k: v for k, v in writable.items()
                                        if k in spec.columns and not spec.columns[k].primary_key}},
        f"{name}.key": key,
        f"{name}.ref": ({"anyOf": [spec.pk[0].kind.schema(for_input=True), key_object]}
                        if len(spec.pk) == 1 else key_object),
        f"{name}.page": {
            "type": "object", "required": ["items", "limit"], "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": _read_schema(name)},
                "limit": {"type": "integer", "minimum": 1},
                "offset": {"type": "integer", "minimum": 0},
                "total": {"type": "integer", "minimum": 0},
                "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        },
    }


def _parameters(state: APIState) -> dict[str, t.Any]:
    limits = state.limits
    return {
        "depth": {"name": "depth", "in": "query", "description":
                  "Expand relationships this many levels; past it they are keys.",
                  "schema": {"type": "integer", "minimum": 0, "maximum": limits.max_depth}},
        "limit": {"name": "limit", "in": "query", "description":
                  f"Items per page (default {limits.page_size}).",
                  "schema": {"type": "integer", "minimum": 1,
                             "maximum": limits.max_page_size}},
        "offset": {"name": "offset", "in": "query",
                   "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
        "cursor": {"name": "cursor", "in": "query", "description":
                   "Keyset paging: empty for the first page, then 'next_cursor' (an 'offset'"
                   " beside it skips that many items after it). Opaque, as a key: a cursor"
                   " the API did not give for this sort names no page (404).",
                   "schema": {"type": "string"}},
        "total": {"name": "total", "in": "query", "description":
                  "Count the total (default "
                  f"{'true' if limits.include_total else 'false'}).",
                  "schema": {"type": "boolean"}},
    }


def _json(schema: dict[str, t.Any], description: str = "OK",
          headers: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    response: dict[str, t.Any] = {"description": description,
                                  "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _problem(description: str = "Problem details (RFC 9457).") -> dict[str, t.Any]:
    return {"description": description, "content": {MIMETYPE: {"schema": PROBLEM}}}


_DESCRIBED = {
    404: "Not found: no object has the key in the URL, or the 'cursor' is not one this API"
         " gave for this sort (problem details, RFC 9457).",
    409: "Conflict: a unique value already taken, a related key that no object has, or a"
         " foreign key that disagrees with its relationship given beside it (as 'house_id'"
         " and 'house'); 'errors' names each field, as 'house' or 'cats[1]' ('[i].house' in"
         " an array). Nothing was written (problem details, RFC 9457).",
}


# What the web server answers itself, before the API reads the request: no schema bounds a
# URL or a header in bytes (a filter's characters may take 12 each, percent-encoded).
_BEFORE_THE_APP = {
    "description": "Refused by the web server before the API (under gunicorn, a request line"
                   " or header over 8,190 bytes): problem details without 'errors'.",
    "content": {MIMETYPE: {"schema": {
        "type": "object", "required": ["type", "title", "status", "detail"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}}}}},
}


def _responses(success: dict[str, t.Any], kind: str) -> dict[str, t.Any]:
    responses = dict(success)
    for status in _ERRORS[kind]:
        responses[str(status)] = _problem(*([_DESCRIBED[status]] if status in _DESCRIBED
                                           else []))
    responses["414"] = responses["431"] = _BEFORE_THE_APP
    responses["default"] = _problem()
    return responses


def _filter(state: APIState, spec: ModelSpec) -> dict[str, t.Any]:
    """The ``filter`` parameter of ``spec``: the pattern the server holds every filter to."""
    return {"name": "filter", "in": "query", "style": "form", "explode": True,
            "description": _FILTER, "schema": {"type": "array", "items": {
                "type": "string", "maxLength": MAX_FILTER_LENGTH,
                "pattern": filter_pattern(spec, state.readable_target)}}}


def _filter_parameters(state: APIState) -> dict[str, t.Any]:
    """Each collection's ``filter`` parameter, once: its pattern is long."""
    return {f"filter.{spec.collection}": _filter(state, spec) for spec in state.specs.values()}


def _params(*names: str, spec: ModelSpec | None = None, state: APIState | None = None
            ) -> list[dict[str, t.Any]]:
    """References to the shared parameters; ``fields``, ``sort`` and ``filter`` are the
    model's own."""
    out: list[dict[str, t.Any]] = []
    for name in names:
        if name == "filter" and spec is not None:
            out.append({"$ref": f"#/components/parameters/filter.{spec.collection}"})
        elif name == "fields" and spec is not None and state is not None:
            out.append({"name": "fields", "in": "query", "schema": _fields_schema(state, spec),
                        "description": "Comma-separated fields to show (the key is always"
                                       " shown); empty for the key alone."})
            for other in state.specs.values():
                if "GET" in other.options.methods:
                    out.append({"name": f"fields[{other.collection}]", "in": "query",
                                "schema": _fields_schema(state, other),
                                "description": f"The fields of every {other.name} shown, as"
                                               " 'fields' (at any depth)."})
        elif name == "sort" and spec is not None:
            sortable = [c.key for c in spec.columns.values() if c.kind.sortable]
            out.append({"name": "sort", "in": "query", "schema": {
                "type": "string", "pattern": f"^$|{_list_pattern(sortable, '-?')}"},
                "description": "Comma-separated columns, '-' for descending; empty for the"
                               " default order."})
        else:
            out.append({"$ref": f"#/components/parameters/{name}"})
    return out


def _fields_schema(state: APIState, spec: ModelSpec) -> dict[str, t.Any]:
    """Names of the model's fields joined by commas, or nothing, exactly as the server reads."""
    known = [*spec.columns, *spec.properties, *(
        n for n, r in _relations(state, spec)
        if "GET" in state.specs[r.target].options.methods)]
    return {"type": "string", "pattern": f"^$|{_list_pattern(known, '')}"}


def _read_schema(name: str) -> dict[str, t.Any]:
    """An object as a read shows it: in full, or with the fields a 'fields' parameter chose."""
    return {"anyOf": [{"$ref": REF + name}, {"$ref": f"{REF}{name}.sparse"}]}


def _list_pattern(names: t.Sequence[str], prefix: str) -> str:
    choice = f"{prefix}({'|'.join(re.escape(n) for n in names)})"
    return f"^{choice}(,{choice})*$"


def _body(schema: str) -> dict[str, t.Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF + schema}}}}


_LIST = ("depth", "fields", "filter", "sort", "limit", "offset", "cursor", "total")
_NOT_MODIFIED = {"304": {"description": "Not modified (If-None-Match)."}}


def _paths(state: APIState, spec: ModelSpec, name: str, names: dict[str, str]
           ) -> dict[str, t.Any]:
    methods = spec.options.methods
    collection = f"/{spec.collection}/"
    item = _item_path(spec)
    key_params = [{"name": c.key, "in": "path", "required": True,
                   "schema": _path_schema(c.kind.schema())} for c in spec.pk]
    page = {"$ref": f"{REF}{name}.page"}
    obj = {"$ref": REF + name}
    paths: dict[str, t.Any] = {}
    ops: dict[str, t.Any] = {}
    if "GET" in methods:
        ops["get"] = {"operationId": f"list_{spec.collection}", "summary": f"List {name}.",
                      "parameters": _params(*_LIST, spec=spec, state=state),
                      "responses": _responses({"200": _json(page, headers=_LINK),
                                               **_NOT_MODIFIED}, "read")}
    if "POST" in methods:
        ops["post"] = {"operationId": f"create_{spec.collection}", "summary": f"Create a {name}.",
                       "requestBody": _body(f"{name}.create"),
                       "responses": _responses({"201": _json(obj, "Created", _LOCATION)},
                                               "write")}
    if "PUT" in methods and spec.options.allow_put_many:
        ops["put"] = {"operationId": f"update_many_{spec.collection}",
                      "summary": f"Apply one change to every (filtered) {name}.",
                      "parameters": _params("filter", spec=spec, state=state),
                      "requestBody": _body(f"{name}.many"),
                      "responses": _responses({"200": _json({"$ref": REF + "Modified"})},
                                              "write")}
    _bulk(state, spec, name, ops)
    if ops:
        paths[collection] = ops
    ops = {}
    if "GET" in methods:
        ops["get"] = {"operationId": f"get_{spec.collection}", "summary": f"One {name}.",
                      "parameters": _params("depth", "fields", spec=spec, state=state),
                      "responses": _responses({"200": _json(_read_schema(name)),
                                               **_NOT_MODIFIED}, "read")}
    if "PUT" in methods:
        ops["put"] = {"operationId": f"replace_{spec.collection}", "summary": f"Replace a {name}.",
                      "requestBody": _body(f"{name}.replace"),
                      "responses": _responses({"200": _json(obj)}, "write")}
    if "PATCH" in methods:
        ops["patch"] = {"operationId": f"update_{spec.collection}",
                        "summary": f"Change fields of a {name}.",
                        "requestBody": _body(f"{name}.update"),
                        "responses": _responses({"200": _json(obj)}, "write")}
    if "DELETE" in methods:
        ops["delete"] = {"operationId": f"delete_{spec.collection}",
                         "summary": f"Delete a {name}.",
                         "responses": _responses({"204": {"description": "Deleted."}}, "write")}
    for verb in ("put", "patch", "delete"):
        if verb in ops:
            _conditional(ops[verb])
    if ops:
        ops["parameters"] = key_params
        paths[item] = ops
    if "GET" not in methods and "PUT" not in methods:
        return paths
    position = "position" if "position" not in {c.key for c in spec.pk} else "position_"
    for relation_name, relation in _relations(state, spec):
        target_spec = state.specs[relation.target]
        target = names[target_spec.collection]
        base = f"{item}/{relation_name}"
        op_id = f"{spec.collection}_{relation_name}"
        if not relation.many:
            if "GET" in methods:
                paths[base] = {"parameters": key_params, "get": {
                    "operationId": f"get_{op_id}", "summary": f"The {relation_name} of a {name}.",
                    "parameters": _params("depth", "fields", spec=target_spec, state=state),
                    "responses": _responses({"200": _json(_read_schema(target)),
                                             **_NOT_MODIFIED}, "read")}}
            continue
        ops = {"parameters": key_params}
        if "GET" in methods:
            ops["get"] = {"operationId": f"list_{op_id}",
                          "summary": f"The {relation_name} of a {name}.",
                          "parameters": _params(*_LIST, spec=target_spec, state=state),
                          "responses": _responses({"200": _json({"$ref": f"{REF}{target}.page"},
                                                                headers=_LINK),
                                                   **_NOT_MODIFIED}, "read")}
        if "PUT" in methods and relation.writable:
            ops["put"] = {"operationId": f"replace_{op_id}",
                          "summary": f"Replace the {relation_name} of a {name}.",
                          "requestBody": {"required": True, "content": {"application/json": {
                              "schema": {"type": "array",
                                         "items": {"$ref": f"{REF}{target}.ref"}}}}},
                          "responses": _responses({"204": {"description": "Replaced."}},
                                                  "write")}
            _conditional(ops["put"])
        paths[base + "/"] = ops
        if "GET" in methods:
            paths[f"{base}/{{{position}}}"] = {"get": {
                "operationId": f"get_{op_id}_at", "summary":
                f"The {relation_name} of a {name} at a position (from 1).",
                "parameters": [*key_params, {"name": position, "in": "path", "required": True,
                                             "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": MAX_OFFSET + 1}},
                               *_params("depth", "fields", spec=target_spec, state=state)],
                "responses": _responses({"200": _json(_read_schema(target)),
                                         **_NOT_MODIFIED}, "read")}}
    return paths


_IF_MATCH = {
    "name": "If-Match", "in": "header", "required": False,
    "description": "Write only if nothing changed since you read it: the ETag of a GET of this"
                   " URL without query parameters (or of the last PUT or PATCH), else 412;"
                   " '*': if it exists. Compared strongly: a weak tag W/\"...\" never matches.",
    "schema": {"type": "string", "pattern": IF_MATCH_PATTERN},
}
_ETAG = {"ETag": {"description": "The object's new ETag, for the next If-Match.",
                  "schema": {"type": "string"}}}


def _conditional(operation: dict[str, t.Any]) -> None:
    """A write that honours ``If-Match``: the header, its 412, and the ETag of its 200."""
    operation["parameters"] = [*operation.get("parameters", []), _IF_MATCH]
    responses = operation["responses"]
    responses["412"] = _problem("The ETag given in If-Match is not the current one: nothing"
                                " was changed (problem details, RFC 9457).")
    ok = responses.get("200")
    if ok is not None:
        responses["200"] = {**ok, "headers": {**ok.get("headers", {}), **_ETAG}}


def _path_schema(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    if schema.get("type") == "string" and "format" not in schema and "pattern" not in schema:
        return {**schema, "minLength": 1}
    return schema


_LINK = {"Link": {"description": "first, prev, next and last pages (RFC 8288).",
                  "schema": {"type": "string"}}}
_LOCATION = {"Location": {"description": "The URL of the new object.",
                          "schema": {"type": "string"}}}


_APPLIED = {"Preference-Applied": {
    "description": "'resolution=merge-duplicates' when the upsert was made.",
    "schema": {"type": "string", "enum": ["resolution=merge-duplicates"]}}}


def _bulk(state: APIState, spec: ModelSpec, name: str, ops: dict[str, t.Any]) -> None:
    """A collection's CSV export, bulk create, upsert and filtered DELETE, added to ``ops``."""
    obj = {"$ref": REF + name}
    read = ops.get("get")
    if read is not None:
        read["parameters"] = [*read["parameters"], {
            "name": "format", "in": "query", "schema": {"enum": ["csv", "json"]},
            "description": "csv: the matching objects as CSV (as 'Accept: text/csv'), streamed:"
                           " every one unless 'limit', 'offset' or 'cursor' is given;"
                           " relationships as keys whatever 'depth'; no total."}]
        read["responses"]["200"]["content"][CSV] = {"schema": {
            "type": "string", "description": "RFC 4180: a header row of the field names, then"
            " one row per object; relationships as keys."}}
    post = ops.get("post")
    if post is not None:
        create = {"$ref": f"{REF}{name}.create"}
        post["summary"] = f"Create a {name}, or an array of them; upsert with 'Prefer'."
        post["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [create, {"type": "array", "items": create, "minItems": 1,
                               "maxItems": state.max_bulk_items}]}}}}
        created = {"type": "object", "required": ["items", "locations"],
                   "additionalProperties": False,
                   "properties": {"items": {"type": "array", "items": obj},
                                  "locations": {"type": "array", "items": {"type": "string"}}}}
        either = {"oneOf": [obj, created]}
        headers = {**_LOCATION, **_APPLIED}
        post["responses"]["201"] = _json(
            either, "Created: the object (with 'Location') for an object; for an array, the"
            " objects and their URLs, in the array's order.", headers)
        post["responses"]["200"] = _json(
            either, "Upserted, each object updated (none created).", headers)
        post["parameters"] = [
            *post.get("parameters", ()),
            # Any text: other preferences are ignored (RFC 7240), so no value is refused.
            {"name": "Prefer", "in": "header", "schema": {"type": "string"},
             "description": "'resolution=merge-duplicates' upserts: update the object with"
                            " the same key (or 'on_conflict' columns), given fields only;"
                            " create the others. Other preferences are ignored."},
            {"name": "on_conflict", "in": "query", "schema": {
                "enum": [",".join(names) for names in unique_sets(spec)]},
             "description": "With 'Prefer: resolution=merge-duplicates': the columns of a"
                            " unique constraint to match on, instead of the key (checked, and"
                            " unused, without it)."},
        ]
    if "DELETE" in spec.options.methods and spec.options.allow_delete_many:
        ops["delete"] = {
            "operationId": f"delete_many_{spec.collection}",
            "summary": f"Delete every {name} matching the filters.",
            # Required here: the server deletes without a filter only when 'all=true' says
            # so, which OpenAPI cannot say, so the document offers the filtered form alone.
            "parameters": [{**_filter(state, spec), "required": True}],
            "responses": _responses({"200": _json({
                "type": "object", "required": ["num_deleted"], "additionalProperties": False,
                "properties": {"num_deleted": {"type": "integer", "minimum": 0}}})}, "write"),
        }
