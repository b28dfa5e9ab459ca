"""The API described: ``/api/`` (a listing) and ``/api/openapi.json`` (OpenAPI 3.1)."""

from __future__ import annotations

import re
import typing as t

from ... import __version__
from .problems import CATALOGUE, MIMETYPE, TYPE_PREFIX
from .query import MAX_OFFSET, OPERATORS

if t.TYPE_CHECKING:
    from .manager import APIState
    from .model import ModelSpec, RelationSpec

REF = "#/components/schemas/"
PROBLEM = {"$ref": REF + "Problem"}
_ERRORS = {
    "read": (400, 403, 404),
    "write": (400, 403, 404, 409, 413, 415, 422),
}


def index(state: APIState) -> dict[str, t.Any]:
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
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{state.project.name} API", "version": __version__,
                 "description": _DESCRIPTION},
        "servers": [{"url": script_root + state.prefix}],
        "paths": paths,
        "components": {"schemas": schemas, "parameters": _parameters(state)},
    }


_DESCRIPTION = (
    "Every model as JSON. Read with depth, filters (filter=PATH:OP:VALUE, OP one of "
    + ", ".join(OPERATORS) + "), sort, fields, limit/offset or cursor paging. Every error is"
    " application/problem+json (RFC 9457)."
)


def _schema_names(state: APIState) -> dict[str, str]:
    counts: dict[str, int] = {}
    for spec in state.specs.values():
        counts[spec.name] = counts.get(spec.name, 0) + 1
    reserved = {"Problem", "Modified", "Index"}
    return {spec.collection: spec.name if counts[spec.name] == 1 and spec.name not in reserved
            else spec.collection for spec in state.specs.values()}


def _nullable(schema: dict[str, t.Any], nullable: bool) -> dict[str, t.Any]:
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


def _key_schema(spec: ModelSpec) -> dict[str, t.Any]:
    if len(spec.pk) == 1:
        return spec.pk[0].kind.schema()
    return {"type": "object", "required": [c.key for c in spec.pk],
            "properties": {c.key: c.kind.schema() for c in spec.pk},
            "additionalProperties": False}


def _schemas(state: APIState, spec: ModelSpec, name: str, names: dict[str, str]
             ) -> dict[str, t.Any]:
    output: dict[str, t.Any] = {}
    writable: dict[str, t.Any] = {}
    for column in spec.columns.values():
        schema = dict(_nullable(column.kind.schema(), column.nullable))
        if column.doc:
            schema["description"] = column.doc
        if not column.writable:
            schema["readOnly"] = True
        output[column.key] = schema
        if column.writable:
            writable[column.key] = _nullable(column.kind.schema(for_input=True), column.nullable)
    for relation_name, relation in _relations(state, spec):
        target = names[state.specs[relation.target].collection]
        either = {"anyOf": [{"$ref": f"{REF}{target}.key"}, {"$ref": f"{REF}{target}"}]}
        ref = {"$ref": f"{REF}{target}.ref"}
        if relation.many:
            output[relation_name] = {"type": "array", "items": either}
            if relation.writable:
                writable[relation_name] = {"type": "array", "items": ref}
        else:
            output[relation_name] = {"anyOf": [*either["anyOf"], {"type": "null"}]}
            if relation.writable:
                writable[relation_name] = {"anyOf": [ref, {"type": "null"}]}
    for prop, schema in spec.properties.items():
        output[prop] = {**schema, "readOnly": True}
    required = [c.key for c in spec.columns.values() if c.required and c.writable]
    key = _key_schema(spec)
    key_object = {"type": "object", "required": [c.key for c in spec.pk],
                  "properties": {c.key: c.kind.schema(for_input=True) for c in spec.pk}}
    return {
        name: {"type": "object", "properties": output, "additionalProperties": False},
        f"{name}.create": {"type": "object", "properties": writable, "required": required,
                           "additionalProperties": False},
        f"{name}.replace": {"type": "object", "properties": writable,
                            "required": [r for r in required
                                         if not spec.columns[r].primary_key],
                            "additionalProperties": False},
        f"{name}.update": {"type": "object", "properties": writable,
                           "additionalProperties": False},
        f"{name}.many": {"type": "object", "additionalProperties": False, "minProperties": 1,
                         "properties": {k: v for k, v in writable.items()
                                        if k in spec.columns and not spec.columns[k].primary_key}},
        f"{name}.key": key,
        f"{name}.ref": {"anyOf": [key, key_object]} if len(spec.pk) == 1 else key_object,
        f"{name}.page": {
            "type": "object", "required": ["items", "limit"], "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": {"$ref": REF + name}},
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
        "filter": {"name": "filter", "in": "query", "style": "form", "explode": True,
                   "description": "PATH:OP:VALUE, repeatable; PATH may cross relationships"
                   " (house.address); OP is one of " + ", ".join(OPERATORS) + ".",
                   "schema": {"type": "array", "items": {
                       "type": "string",
                       "pattern": f"^[A-Za-z_][A-Za-z0-9_.]*:({'|'.join(OPERATORS)})(:.*)?$"}}},
        "limit": {"name": "limit", "in": "query", "description":
                  f"Items per page (default {limits.page_size}).",
                  "schema": {"type": "integer", "minimum": 1,
                             "maximum": limits.max_page_size}},
        "offset": {"name": "offset", "in": "query",
                   "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
        "cursor": {"name": "cursor", "in": "query", "description":
                   "Keyset paging: empty for the first page, then 'next_cursor'.",
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


def _responses(success: dict[str, t.Any], kind: str) -> dict[str, t.Any]:
    responses = dict(success)
    for status in _ERRORS[kind]:
        responses[str(status)] = _problem()
    responses["default"] = _problem()
    return responses


def _params(*names: str, spec: ModelSpec | None = None, state: APIState | None = None
            ) -> list[dict[str, t.Any]]:
    """References to the shared parameters; ``fields`` and ``sort`` are the model's own."""
    out: list[dict[str, t.Any]] = []
    for name in names:
        if name == "fields" and spec is not None and state is not None:
            known = [*spec.columns, *(n for n, _r in _relations(state, spec)), *spec.properties]
            out.append({"name": "fields", "in": "query", "schema": {
                "type": "string", "pattern": _list_pattern(known, "")},
                "description": "Comma-separated fields to show (the key is always shown);"
                               " 'fields[<collection>]' does the same for a related model."})
        elif name == "sort" and spec is not None:
            sortable = [c.key for c in spec.columns.values() if c.kind.sortable]
            out.append({"name": "sort", "in": "query", "schema": {
                "type": "string", "pattern": _list_pattern(sortable, "-?")},
                "description": "Comma-separated columns, '-' for descending."})
        else:
            out.append({"$ref": f"#/components/parameters/{name}"})
    return out


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
                      "parameters": _params("filter"), "requestBody": _body(f"{name}.many"),
                      "responses": _responses({"200": _json({"$ref": REF + "Modified"})},
                                              "write")}
    if ops:
        paths[collection] = ops
    ops = {}
    if "GET" in methods:
        ops["get"] = {"operationId": f"get_{spec.collection}", "summary": f"One {name}.",
                      "parameters": _params("depth", "fields", spec=spec, state=state),
                      "responses": _responses({"200": _json(obj), **_NOT_MODIFIED}, "read")}
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
                    "responses": _responses({"200": _json({"$ref": REF + target}),
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
        paths[base + "/"] = ops
        if "GET" in methods:
            paths[f"{base}/{{{position}}}"] = {"get": {
                "operationId": f"get_{op_id}_at", "summary":
                f"The {relation_name} of a {name} at a position (from 1).",
                "parameters": [*key_params, {"name": position, "in": "path", "required": True,
                                             "schema": {"type": "integer", "minimum": 1}},
                               *_params("depth", "fields", spec=target_spec, state=state)],
                "responses": _responses({"200": _json({"$ref": REF + target}),
                                         **_NOT_MODIFIED}, "read")}}
    return paths


def _path_schema(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    if schema.get("type") == "string" and "format" not in schema and "pattern" not in schema:
        return {**schema, "minLength": 1}
    return schema


_LINK = {"Link": {"description": "first, prev, next and last pages (RFC 8288).",
                  "schema": {"type": "string"}}}
_LOCATION = {"Location": {"description": "The URL of the new object.",
                          "schema": {"type": "string"}}}
