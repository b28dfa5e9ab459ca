"""The one JSON serializer of flasker (the API extension and ``to_json_data`` share it).

orjson writes datetimes (ISO 8601), dates, UUIDs, enums and dataclasses itself;
``default`` adds decimals (as strings, never rounded through a float), sets, and
objects with a ``to_json()`` method. Anything else is a ``TypeError`` naming its type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS


def default(value: t.Any) -> t.Any:
    """Convert what orjson does not know; called by orjson for each such value."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    raise TypeError(
        f"Object of type '{type(value).__module__}.{type(value).__qualname__}' is not JSON"
        " serializable: give it a 'to_json()' method or convert it before serializing."
    )


def dumps(value: t.Any, *, indent: bool = False) -> bytes:
    """Serialize ``value`` to JSON bytes; raises ``TypeError`` naming an unknown type."""
    option = OPTIONS | orjson.OPT_INDENT_2 if indent else OPTIONS
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError as e:
        cause = e.__cause__
        if isinstance(cause, TypeError):
            raise TypeError(str(cause)) from None
        raise TypeError(str(e)) from None


def loads(data: bytes | bytearray | memoryview | str) -> t.Any:
    """Parse JSON; raises ``ValueError`` (``orjson.JSONDecodeError``) on malformed input."""
    return orjson.loads(data)
