"""What a column's type accepts and gives: JSON input, query-string text, JSON output, schema.

Every type question of the API is answered here, once: the validation of bodies,
the parsing of filters, keys and cursors, the output conversion and the OpenAPI
schema all read the same :class:`Kind`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import math
import typing as t
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from ...util.convert import (
    NUMBER,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_float,
    to_int,
    to_time,
    to_uuid,
)

# Integer ranges of the portable SQL types (SQLite stores 64 bits; PostgreSQL's INTEGER is 32).
_INT_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))
# The dates and times Python's fromisoformat reads, as patterns a schema validator checks:
# years 0001-9999, months 01-12, the days each month has (29 February in leap years only),
# hours 00-23, minutes and seconds 00-59. [0-9], not \d: ASCII digits only, as the server reads.
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
MONTH_DAY = (r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
              r"|02-(0[1-9]|1[0-9]|2[0-8]))")
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
_NAIVE_DATETIME = f"^({_YEAR}-{MONTH_DAY}|{_LEAP_YEAR}-02-29)[T ]{_CLOCK}$"
_NAIVE_TIME = f"^{_CLOCK}$"
#: Text without a NUL character (ECMA-262, as JSON Schema reads patterns).
NO_NUL = r"^[^\u0000]*$"
# Decimals beyond 10**±1000 are refused rather than overflowing a database's NUMERIC.
MAX_EXPONENT = 1000


class Invalid(ValueError):
    """A value does not fit its column; the message is the reason, as a client reads it."""


@dataclass(frozen=True)
class Kind:
    """The API's view of a column type.

    ``name`` is one of ``integer``, ``number``, ``decimal``, ``boolean``, ``string``,
    ``enum``, ``datetime``, ``date``, ``time``, ``interval``, ``uuid``, ``json``,
    ``binary``, ``array`` and ``any`` (a type the API passes through unchanged).
    """

    name: str
    minimum: int | None = None
    maximum: int | None = None
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    timezone: bool = False
    choices: tuple[t.Any, ...] = ()
    as_uuid: bool = True
    item: Kind | None = None

    # -- reading ----------------------------------------------------------------------------

    def from_json(self, value: t.Any) -> t.Any:
        """Convert a value of a JSON body to what the column stores; raise :class:`Invalid`."""
        reader = getattr(self, f"_json_{self.name}", None)
        return value if reader is None else reader(value)

    def from_text(self, text: str) -> t.Any:
        """Convert query-string or path text (a filter value, a key) to what the column stores.

        Text is read with the spellings of :mod:`flasker.util.convert`, as in the
        configuration and CSV files.
        """
        if "\x00" in text:
            raise Invalid("contains a NUL character")
        name = self.name
        if name == "integer":
            return self._json_integer(_read(to_int, text))
        if name in ("number", "interval"):
            return self.from_json(_read(to_float, text))
        if name == "decimal":
            return self._json_decimal(text, check_scale=False)
        if name == "boolean":
            return _read(to_bool, text)
        if name == "enum":
            for choice in self.choices:
                if str(_enum_value(choice)) == text:
                    return choice
            raise Invalid(f"{text!r} is not one of {self._choice_list()}")
        if name == "string":
            return text
        if name in ("datetime", "date", "time", "uuid"):
            return self.from_json(text)
        if name == "any":
            return text
        raise Invalid(f"a {name} column cannot be compared with text")

    def _json_integer(self, value: t.Any) -> int:
        if type(value) is float and value.is_integer():
            # JSON Schema counts 1.0 as an integer, so a client that follows the document may
            # send it: it is the integer 1.
            value = int(value)
        if type(value) is not int:
            raise Invalid("expected an integer")
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise Invalid(f"must be at most {self.maximum}")
        return value

    def _json_number(self, value: t.Any) -> float:
        if type(value) not in (int, float):
            raise Invalid("expected a number")
        number = float(value)
        if not math.isfinite(number):
            raise Invalid("must be a finite number")
        return number

    def _json_decimal(self, value: t.Any, check_scale: bool = True) -> decimal.Decimal:
        if type(value) is int:
            number = decimal.Decimal(value)
        elif type(value) is float:
            if not math.isfinite(value):
                raise Invalid("must be a finite number")
            # A float has no significant trailing zeros: 5.0 has no decimal places.
            number = decimal.Decimal(repr(value)).normalize()
        elif isinstance(value, str):
            number = _read(to_decimal, value)
        else:
            raise Invalid("expected a decimal number (a JSON number or a string such as '12.50')")
        if not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
            raise Invalid("is out of range")
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite by the checks above
        places = max(0, -exponent)
        whole = max(0, len(digits) + exponent) if number else 0
        if check_scale and self.scale is not None and places > self.scale:
            raise Invalid(f"has more than {self.scale} decimal places")
        if self.precision is not None:
            allowed = self.precision - (self.scale or 0)
            if whole > allowed:
                raise Invalid(f"has more than {allowed} digits before the decimal point")
        return number

    def _json_boolean(self, value: t.Any) -> bool:
        if type(value) is not bool:
            raise Invalid("expected a boolean (true or false)")
        return value

    def _json_string(self, value: t.Any) -> str:
        if not isinstance(value, str):
            raise Invalid("expected a string")
        if "\x00" in value:
            raise Invalid("contains a NUL character")
        if self.length is not None and len(value) > self.length:
            raise Invalid(f"is longer than {self.length} characters")
        return value

    def _json_enum(self, value: t.Any) -> t.Any:
        for choice in self.choices:
            if _enum_value(choice) == value and type(_enum_value(choice)) is type(value):
                return choice
        raise Invalid(f"must be one of {self._choice_list()}")

    def _choice_list(self) -> str:
        return ", ".join(repr(_enum_value(c)) for c in self.choices)

    def _json_datetime(self, value: t.Any) -> dt.datetime:
        if not isinstance(value, str):
            raise Invalid("expected an ISO 8601 date and time (a string)")
        moment = _read(to_datetime, value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC) if self.timezone else moment
        # Stored in UTC: SQLite keeps no offset, and a naive column holds UTC by convention.
        try:
            moment = moment.astimezone(dt.UTC)
        except OverflowError:
            raise Invalid(f"{value!r} is out of range") from None
        return moment if self.timezone else moment.replace(tzinfo=None)

    def _json_date(self, value: t.Any) -> dt.date:
        if not isinstance(value, str):
            raise Invalid("expected an ISO 8601 date (a string)")
        return _read(to_date, value)

    def _json_time(self, value: t.Any) -> dt.time:
        if not isinstance(value, str):
            raise Invalid("expected an ISO 8601 time (a string)")
        return _read(to_time, value)

    def _json_interval(self, value: t.Any) -> dt.timedelta:
        seconds = self._json_number(value)
        try:
            return dt.timedelta(seconds=seconds)
        except OverflowError:
            raise Invalid("is too large a duration") from None

    def _json_uuid(self, value: t.Any) -> uuid.UUID | str:
        if not isinstance(value, str):
            raise Invalid("expected a UUID (a string)")
        parsed = _read(to_uuid, value)
        return parsed if self.as_uuid else str(parsed)

    def _json_binary(self, value: t.Any) -> bytes:
        if not isinstance(value, str):
            raise Invalid("expected base64 text")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("is not valid base64") from None
        if self.length is not None and len(data) > self.length:
            raise Invalid(f"is longer than {self.length} bytes")
        return data

    def _json_array(self, value: t.Any) -> list[t.Any]:
        if not isinstance(value, list):
            raise Invalid("expected an array")
        if self.item is None:
            return value
        out = []
        for index, element in enumerate(value):
            try:
                out.append(None if element is None else self.item.from_json(element))
            except Invalid as e:
                raise Invalid(f"item {index}: {e}") from None
        return out

    # -- writing ----------------------------------------------------------------------------

    @property
    def to_json(self) -> t.Callable[[t.Any], t.Any] | None:
        """The conversion of a stored value for ``flasker.util.json.dumps``, if it needs one."""
        if self.name == "binary":
            return _base64
        if self.name == "decimal":
            return _plain
        if self.name == "datetime" and self.timezone:
            return _aware
        return None

    @property
    def sortable(self) -> bool:
        return self.name not in ("json", "binary", "array", "any")

    @property
    def comparable(self) -> bool:
        """Whether ``eq``/``lt``/``in``... apply (``is_null`` applies to every kind)."""
        return self.name not in ("json", "binary", "array")

    @property
    def ordered(self) -> bool:
        """Whether ``lt``/``le``/``gt``/``ge`` apply: SQL has no order of booleans."""
        return self.comparable and self.name != "boolean"

    @property
    def textual(self) -> bool:
        """Whether ``like``/``ilike`` apply."""
        return self.name == "string"

    # -- describing -------------------------------------------------------------------------

    def schema(self, *, for_input: bool = False) -> dict[str, t.Any]:
        """The JSON Schema (OpenAPI 3.1) of the column's values, without nullability."""
        name = self.name
        if name == "integer":
            schema: dict[str, t.Any] = {"type": "integer"}
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
            return schema
        if name == "number":
            return {"type": "number"}
        if name == "decimal":
            text = {"type": "string", "pattern": self._decimal_pattern(),
                    "description": "A decimal number, as text so that no digit is lost."}
            return {"anyOf": [text, self._decimal_number()]} if for_input else text
        if name == "boolean":
            return {"type": "boolean"}
        if name == "string":
            schema = {"type": "string"}
            if self.length is not None:
                schema["maxLength"] = self.length
            if for_input:  # a NUL is refused (PostgreSQL's text cannot hold one)
                schema["pattern"] = NO_NUL
            return schema
        if name == "enum":
            return {"enum": [_enum_value(c) for c in self.choices]}
        if name == "datetime":
            if self.timezone:
                return {"type": "string", "format": "date-time"}
            return {"type": "string", "pattern": _NAIVE_DATETIME,
                    "description": "ISO 8601 date and time, without offset (UTC)."}
        if name == "date":
            return {"type": "string", "format": "date"}
        if name == "time":
            return {"type": "string", "pattern": _NAIVE_TIME}
        if name == "interval":
            return {"type": "number", "description": "A duration in seconds."}
        if name == "uuid":
            return {"type": "string", "format": "uuid"}
        if name == "binary":
            return {"type": "string", "contentEncoding": "base64"}
        if name == "array":
            items = self.item.schema(for_input=for_input) if self.item else {}
            return {"type": "array", "items": items}
        return {}

    def _decimal_pattern(self) -> str:
        """The decimal texts that fit the column's precision and scale.

        Without a precision, any number (:data:`NUMBER`). With one, plain notation with at
        most ``precision - scale`` significant digits before the point and ``scale`` after
        it (trailing zeros count, as the server counts them): exponents are left out.
        """
        if self.precision is None:
            return NUMBER.pattern.join("^$")
        whole = self.precision - (self.scale or 0)
        integer = f"0*[0-9]{{1,{whole}}}" if whole > 0 else "0+"
        if self.scale is None:
            fraction, alone = "[0-9]*", r"\.[0-9]+"
        else:
            fraction, alone = f"[0-9]{{0,{self.scale}}}", f"\\.[0-9]{{1,{self.scale}}}"
        alternatives = [f"{integer}(\\.{fraction})?"]
        if self.scale != 0:
            alternatives.append(alone)
        return f"^[+-]?({'|'.join(alternatives)})$"

    def _decimal_number(self) -> dict[str, t.Any]:
        """A decimal given as a JSON number: its bounds and, with a scale, its step."""
        schema: dict[str, t.Any] = {"type": "number"}
        if self.precision is not None:
            bound = 10 ** (self.precision - (self.scale or 0))
            schema.update(exclusiveMinimum=-bound, exclusiveMaximum=bound)
        if self.scale is not None:
            schema["multipleOf"] = 1 if self.scale == 0 else float(f"1e-{self.scale}")
        return schema


_T = t.TypeVar("_T")


def _read(convert: t.Callable[[str], _T], text: str) -> _T:
    """``convert(text)``, its error given as the reason a client reads: ``'x' is not a UUID``."""
    try:
        return convert(text)
    except ValueError as e:
        raise Invalid(f"{text!r} is {e}") from None


def _enum_value(choice: t.Any) -> t.Any:
    return choice.value if isinstance(choice, enum.Enum) else choice


def _aware(value: dt.datetime) -> dt.datetime:
    """A value of a timezone-aware column, in UTC whatever the server's time zone.

    SQLite gives it back naive, in UTC as it was stored.
    """
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _plain(value: decimal.Decimal) -> str:
    """A decimal as text in plain notation, digits as stored (``0.0000001``, never ``1E-7``).

    As PostgreSQL writes a NUMERIC: the two read paths give the same text (``sqljson``).
    """
    return format(value, "f")


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def kind_of(type_: sa.types.TypeEngine[t.Any]) -> Kind:
    """Classify a SQLAlchemy type; a type the API does not know is passed through (``any``)."""
    if isinstance(type_, sa.types.TypeDecorator):
        # A decorator converts values its own way: the API passes them through unchanged.
        return Kind("any")
    if isinstance(type_, sa.Boolean):
        return Kind("boolean")
    if isinstance(type_, sa.Integer):
        bits = next(b for cls, b in _INT_BITS if isinstance(type_, cls))
        return Kind("integer", minimum=-(2 ** (bits - 1)), maximum=2 ** (bits - 1) - 1)
    if isinstance(type_, sa.Float):
        return Kind("decimal") if type_.asdecimal else Kind("number")
    if isinstance(type_, sa.Numeric):
        if not type_.asdecimal:
            return Kind("number")
        return Kind("decimal", precision=type_.precision, scale=type_.scale)
    if isinstance(type_, sa.Enum):
        choices = tuple(type_.enum_class) if type_.enum_class is not None else tuple(type_.enums)
        return Kind("enum", choices=choices)
    if isinstance(type_, sa.String):
        return Kind("string", length=type_.length)
    if isinstance(type_, sa.DateTime):
        return Kind("datetime", timezone=bool(type_.timezone))
    if isinstance(type_, sa.Date):
        return Kind("date")
    if isinstance(type_, sa.Time):
        return Kind("time")
    if isinstance(type_, sa.Interval):
        return Kind("interval")
    if isinstance(type_, sa.Uuid):
        return Kind("uuid", as_uuid=bool(type_.as_uuid))
    if isinstance(type_, sa.ARRAY):
        return Kind("array", item=kind_of(type_.item_type))
    if isinstance(type_, sa.JSON):
        return Kind("json")
    if isinstance(type_, sa.LargeBinary):
        return Kind("binary", length=type_.length)
    return Kind("any")
