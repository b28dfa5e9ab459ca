"""Checking a JSON body against a model before anything is written."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from .columns import Invalid
from .model import key_from_json, key_segment_fault
from .problems import FieldError, invalid_input

if t.TYPE_CHECKING:
    from .model import Key, ModelSpec
    from .query import Catalog

CREATE = "create"
REPLACE = "replace"
UPDATE = "update"
MANY = "many"


@dataclass
class Input:
    """A body that passed: column values, and relationships as keys (a list for a collection)."""

    columns: dict[str, t.Any] = field(default_factory=dict)
    relations: dict[str, t.Any] = field(default_factory=dict)


def check_body(spec: ModelSpec, body: t.Any, mode: str, catalog: Catalog,
               key: Key = None) -> Input:
    """Validate ``body`` for ``mode`` (create, replace, update or many); 422 on any fault.

    Every fault is reported at once, each with its field. ``key`` is the object's key
    when it exists: the key may be repeated in the body, not changed.
    """
    if not isinstance(body, dict):
        raise invalid_input([FieldError("", "expected a JSON object")],
                            f"The body must be a JSON object of {spec.name}'s fields.")
    errors: list[FieldError] = []
    data = Input()
    key_values = None if key is None else ((key,) if len(spec.pk) == 1 else tuple(key))
    for name, value in body.items():
        column = spec.columns.get(name)
        if column is not None:
            if not column.writable:
                errors.append(FieldError(name, "is read-only"))
                continue
            if value is None:
                if not column.nullable:
                    errors.append(FieldError(name, "may not be null"))
                    continue
                converted = None
            else:
                try:
                    converted = (key_from_json(column, value) if column.primary_key
                                 else column.kind.from_json(value))
                except Invalid as e:
                    errors.append(FieldError(name, str(e)))
                    continue
            if column.primary_key and mode == MANY:
                errors.append(FieldError(name, "is a key and cannot be set on many objects"))
                continue
            if column.primary_key and key_values is not None:
                position = spec.pk.index(column)
                if converted != key_values[position]:
                    errors.append(FieldError(name, "is the key and cannot be changed"))
                continue
            if column.primary_key:  # a new object's key: its URL must lead back to it
                fault = key_segment_fault(converted)
                if fault is not None:
                    errors.append(FieldError(name, fault))
                    continue
            data.columns[name] = converted
            continue
        relation = spec.relations.get(name)
        target = catalog.spec_of(relation.target) if relation is not None else None
        if relation is not None and target is not None and catalog.readable(target):
            if mode == MANY:
                errors.append(FieldError(name, "is a relationship and cannot be set on many"
                                               " objects"))
            elif not relation.writable:
                errors.append(FieldError(name, "is read-only"))
            elif relation.many:
                if not isinstance(value, list):
                    errors.append(FieldError(name, f"expected a list of {target.name} keys"))
                    continue
                keys = []
                for index, element in enumerate(value):
                    try:
                        keys.append(target.key_from_json(element))
                    except Invalid as e:
                        errors.append(FieldError(f"{name}[{index}]", str(e)))
                data.relations[name] = keys
            elif value is None:
                data.relations[name] = None
            else:
                try:
                    data.relations[name] = target.key_from_json(value)
                except Invalid as e:
                    errors.append(FieldError(name, str(e)))
            continue
        if name in spec.properties:
            errors.append(FieldError(name, "is read-only"))
        else:
            errors.append(FieldError(name, f"is not a field of {spec.name}"))
    if mode in (CREATE, REPLACE):
        # A foreign key omitted beside its relationship (given an object) is set by it.
        by_relation = {n for r, v in data.relations.items() if v is not None
                       for n in spec.relations[r].local_key or ()}
        for name, column in spec.columns.items():
            if name in body or not column.writable:
                continue
            if column.required and not (column.primary_key and key_values is not None) \
                    and name not in by_relation:
                errors.append(FieldError(name, "is required"))
            elif mode == REPLACE and not column.primary_key and not column.has_default \
                    and name not in by_relation:
                data.columns[name] = None  # PUT replaces: an omitted field is emptied
    if errors:
        raise invalid_input(errors)
    return data
