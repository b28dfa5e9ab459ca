"""A collection as CSV (RFC 4180), written a batch of objects at a time.

The cells hold what the JSON output holds, as text: ``true``/``false``, numbers and
decimals as written, datetimes, dates and times in ISO 8601, UUIDs, enums by value,
binary as base64, an empty cell for null. A relationship is its key (one column key),
a composite key or a list of keys is JSON text, and so are JSON and array columns.
"""

from __future__ import annotations

import csv
import decimal
import io
import typing as t

import orjson

from ...util.json import dumps

MIMETYPE = "text/csv"
BATCH = 1000  # objects read and written at a time: what a streamed export holds in memory


def cell(value: t.Any) -> str:
    """The text of a value of a JSON object of the API, in a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    data = dumps(value)
    if data[:1] == b'"':  # a datetime, date, time, UUID or enum: the JSON string's text
        return t.cast(str, orjson.loads(data))
    return data.decode()


def chunks(names: list[str], batches: t.Iterable[list[dict[str, t.Any]]]) -> t.Iterator[bytes]:
    """The CSV text of ``batches`` of objects under a header row of ``names``, UTF-8.

    One chunk per batch (the header comes with the first), so that a response streams
    as the rows are read. Fields are quoted when they hold a comma, a quote or a line
    break, quotes doubled, and lines end with CRLF, as RFC 4180 says.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(names)
    for items in batches:
        writer.writerows([[cell(item[name]) for name in names] for item in items])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no object at all: the header alone
        yield buffer.getvalue().encode()
