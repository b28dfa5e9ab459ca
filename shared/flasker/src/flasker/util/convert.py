"""Text to values: the one set of spellings that the config, CSV files and the API accept.

The configuration (``.cfg`` file and ``FLASKER__*`` variables), the CSV reader
(``flasker load``) and the API's query strings read text with these functions, so
that a value is spelt the same way everywhere. Surrounding whitespace is ignored;
words are read in any case.

==========  ==================================================================
boolean     ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``; nothing
            else (not ``t``/``f``, ``y``/``n``, nor the empty text)
integer     ASCII digits with an optional sign: ``42``, ``-7``, ``+3``, ``007``
            (not ``1_000``, ``1.0``, ``1e3``)
number      finite decimal notation: ``1.5``, ``-2``, ``.5``, ``1.``, ``6.02e23``
            (not ``nan``, ``inf``, ``1_000.5``); :func:`to_float` gives a float,
            :func:`to_decimal` an exact :class:`~decimal.Decimal`
date        ISO 8601 as :meth:`datetime.date.fromisoformat` reads it: ``2024-02-29``
datetime    ISO 8601: ``2024-02-29T10:30:00``, a space for the ``T``, optional
            fraction and offset (``+02:00`` or ``Z``)
time        ISO 8601: ``10:30``, ``10:30:00.5``, optional offset
UUID        ``12345678-1234-5678-1234-567812345678``, or its 32 hex digits
JSON        any JSON text; ``NaN`` and ``Infinity`` are not JSON, so refused
list        comma-separated (newlines too), items stripped and empty ones dropped:
            ``a, b``; or a JSON array of strings, numbers and booleans:
            ``["a,b", "c"]``. Items stay text, for the caller to convert.
null        ``null`` or ``none`` in a free-form setting (:func:`parse_value`); an
            empty field in a CSV column of any type but text
==========  ==================================================================

Two functions read text whose type is not declared, and stay conservative so that
words stay words: :func:`parse_value` (a Flask, Celery or extension setting: JSON,
Python's ``True``/``False``/``None``, else the text) and :func:`guess` (a CSV
field: integer, number, ``true``/``false``, date, datetime, JSON object or array,
else the text). Neither reads ``yes``/``no`` or ``on``/``off`` as booleans.

A converter raises :class:`ValueError` whose message says what the text is not and
what was expected, as a clause (``not an integer``), for the caller to place after
the value with its own context (the key and file, the CSV line, the query parameter);
:func:`sentence` makes it a sentence of its own.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import typing as t
import uuid

import orjson

# The grammar of a finite number in decimal notation (also the API's schema of a decimal).
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)

_BOOLEANS = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}


def to_bool(text: str) -> bool:
    """``true``/``false``, ``yes``/``no``, ``on``/``off`` or ``1``/``0``, in any case."""
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError("not a boolean (true/false, yes/no, on/off or 1/0)")
    return value


def _plain(text: str) -> bool:
    # int(), float() and Decimal() also read '1_000' and digits of other scripts.
    return text.isascii() and "_" not in text


def to_int(text: str) -> int:
    """ASCII digits with an optional sign."""
    if _plain(text):
        try:
            return int(text)
        except ValueError:
            pass
    raise ValueError("not an integer")


def to_float(text: str) -> float:
    """A finite number in decimal notation, as a float."""
    if _plain(text):
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
            if NUMBER.fullmatch(text.strip()):
                raise ValueError("out of range")
    raise ValueError("not a number")


def to_decimal(text: str) -> decimal.Decimal:
    """A finite number in decimal notation, exactly."""
    if _plain(text):
        try:
            value = decimal.Decimal(text.strip())
        except decimal.InvalidOperation:
            if NUMBER.fullmatch(text.strip()):  # an exponent beyond what a Decimal holds
                raise ValueError("out of range") from None
        else:
            if value.is_finite():
                return value
    raise ValueError("not a decimal number")


def to_date(text: str) -> dt.date:
    """An ISO 8601 date: ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("not an ISO 8601 date (YYYY-MM-DD)") from None


def to_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date and time, with or without offset (naive or aware, as written)."""
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("not an ISO 8601 date and time (YYYY-MM-DDTHH:MM:SS)") from None


def to_time(text: str) -> dt.time:
    """An ISO 8601 time: ``HH:MM[:SS[.ffffff]]``, with or without offset."""
    try:
        return dt.time.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("not an ISO 8601 time (HH:MM:SS)") from None


def to_uuid(text: str) -> uuid.UUID:
    """A UUID, with or without its hyphens."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise ValueError("not a UUID") from None


def to_json(text: str) -> t.Any:
    """Any JSON text."""
    try:
        # orjson, as flasker's serializer: strict JSON (no NaN, no Infinity), and fast.
        return orjson.loads(text.strip())
    except ValueError:
        raise ValueError("not valid JSON") from None


def to_list(text: str) -> list[str]:
    """A comma-separated list, or a JSON array of strings, numbers and booleans, as texts.

    A JSON item that is not a string becomes its JSON text (``1.5``, ``true``), for
    the caller to convert like any other item.
    """
    stripped = text.strip()
    if not stripped.startswith("["):
        return [item.strip() for item in stripped.replace("\n", ",").split(",") if item.strip()]
    try:
        items = orjson.loads(stripped)
    except ValueError:
        raise ValueError("the list is not valid JSON") from None
    if not isinstance(items, list) or not all(
            isinstance(item, str | int | float) for item in items):
        raise ValueError("the list must hold plain values (strings, numbers or booleans)")
    return [item if isinstance(item, str) else orjson.dumps(item).decode() for item in items]


def to_str(text: str) -> str:
    """The text as it is, whitespace included."""
    return text


# -- text of undeclared type ------------------------------------------------------------------

_NULLS = ("null", "none")


def parse_value(text: str) -> t.Any:
    """A free-form setting: JSON where it parses, else the text as it is.

    Python's spellings ``True``, ``False`` and ``None`` are read too (in any case),
    as the sample configuration of every flasker project uses them.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in _NULLS:
        return None
    try:
        return orjson.loads(stripped)
    except ValueError:
        return text


_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*")


def guess(text: str) -> t.Any:
    """The value a CSV field most likely holds: int, float, bool, date, datetime, JSON or itself.

    Conservative: ``007`` stays text (a leading zero is part of a code), only
    ``true``/``false`` are booleans, text with surrounding whitespace stays as it is,
    and anything that fails to parse stays text.
    """
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else text
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    try:
        if _DATE.fullmatch(text):
            return dt.date.fromisoformat(text)
        if _DATETIME.fullmatch(text):
            return dt.datetime.fromisoformat(text)
        if text[:1] in ("{", "["):
            return orjson.loads(text)
    except ValueError:
        pass
    return text


def sentence(error: ValueError) -> str:
    """A converter's message as a sentence of its own: ``Not an integer.``"""
    message = str(error)
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")
