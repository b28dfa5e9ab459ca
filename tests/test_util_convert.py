"""One set of spellings: each converter's table, then the config, CSV and API agreeing."""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t
import uuid
from pathlib import Path

import pytest

from flasker import Project
from flasker.config import ConfigError, load_config
from flasker.util.convert import (
    parse_value,
    sentence,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_float,
    to_int,
    to_json,
    to_list,
    to_time,
    to_uuid,
)
from flasker.util.csvload import load_csv

from .conftest import unique_package, write_project

TRUE = ["true", "True", "TRUE", "yes", "Yes", "on", "ON", "1", " true ", "\tyes\n"]
FALSE = ["false", "False", "no", "NO", "off", "Off", "0", " off "]
NOT_BOOLEANS = ["t", "f", "y", "n", "T", "Y", "", " ", "2", "-1", "maybe", "truthy", "yes!"]
NOT_A_BOOLEAN = "not a boolean (true/false, yes/no, on/off or 1/0)"


@pytest.mark.parametrize("text", TRUE)
def test_true(text: str) -> None:
    assert to_bool(text) is True


@pytest.mark.parametrize("text", FALSE)
def test_false(text: str) -> None:
    assert to_bool(text) is False


@pytest.mark.parametrize("text", NOT_BOOLEANS)
def test_nothing_else_is_a_boolean(text: str) -> None:
    with pytest.raises(ValueError) as info:
        to_bool(text)
    assert str(info.value) == NOT_A_BOOLEAN


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), ("-7", -7), ("+3", 3), (" 12 ", 12), ("007", 7), ("0", 0),
    ("123456789012345678901234567890", 123456789012345678901234567890),
])
def test_integers(text: str, expected: int) -> None:
    assert to_int(text) == expected


@pytest.mark.parametrize("text", ["1_000", "1.0", "1e3", "", "٣", "0x10", "twelve", "1 2"])
def test_not_integers(text: str) -> None:
    with pytest.raises(ValueError, match="^not an integer$"):
        to_int(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("1.5", 1.5), ("-2", -2.0), (".5", 0.5), ("1.", 1.0), ("6.02e23", 6.02e23), (" 3 ", 3.0),
    ("+1E-3", 0.001),
])
def test_numbers(text: str, expected: float) -> None:
    assert to_float(text) == expected
    assert to_decimal(text) == decimal.Decimal(text.strip())


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1_000.5", "", "1,5",
                                  "١.٥", "0x1p3", "e3"])
def test_not_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="^not a number$"):
        to_float(text)
    with pytest.raises(ValueError, match="^not a decimal number$"):
        to_decimal(text)


def test_numbers_out_of_range() -> None:
    with pytest.raises(ValueError, match="^out of range$"):
        to_float("1e999")
    with pytest.raises(ValueError, match="^out of range$"):
        to_decimal("1e99999999999999999999")


def test_decimals_are_exact() -> None:
    value = to_decimal("12.50")
    assert isinstance(value, decimal.Decimal)
    assert str(value) == "12.50"
    assert to_decimal("0.1") + to_decimal("0.2") == decimal.Decimal("0.3")


def test_dates_times_and_uuids() -> None:
    assert to_date(" 2024-02-29 ") == dt.date(2024, 2, 29)
    assert to_datetime("2024-02-29T10:30:00") == dt.datetime(2024, 2, 29, 10, 30)
    assert to_datetime("2024-02-29 10:30") == dt.datetime(2024, 2, 29, 10, 30)
    assert to_datetime("2024-02-29T10:30:00Z") == dt.datetime(2024, 2, 29, 10, 30, tzinfo=dt.UTC)
    assert to_datetime("2024-02-29T12:30:00+02:00").utcoffset() == dt.timedelta(hours=2)
    assert to_time("10:30") == dt.time(10, 30)
    assert to_time("10:30:00.5") == dt.time(10, 30, 0, 500000)
    token = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert to_uuid("12345678-1234-5678-1234-567812345678") == token
    assert to_uuid("12345678123456781234567812345678") == token


@pytest.mark.parametrize(("convert", "text", "message"), [
    (to_date, "2024-02-30", "not an ISO 8601 date (YYYY-MM-DD)"),
    (to_date, "29/02/2024", "not an ISO 8601 date (YYYY-MM-DD)"),
    (to_datetime, "yesterday", "not an ISO 8601 date and time (YYYY-MM-DDTHH:MM:SS)"),
    (to_time, "25:00", "not an ISO 8601 time (HH:MM:SS)"),
    (to_uuid, "1234", "not a UUID"),
    (to_json, "NaN", "not valid JSON"),
    (to_json, "[1, Infinity]", "not valid JSON"),
    (to_json, "{a: 1}", "not valid JSON"),
    (to_list, "[1,", "the list is not valid JSON"),
    (to_list, "[null]", "the list must hold plain values (strings, numbers or booleans)"),
    (to_list, '[{"a": 1}]', "the list must hold plain values (strings, numbers or booleans)"),
])
def test_refusals_say_what_was_expected(convert: t.Callable[[str], t.Any], text: str,
                                        message: str) -> None:
    with pytest.raises(ValueError) as info:
        convert(text)
    assert str(info.value) == message


def test_json() -> None:
    assert to_json(' {"a": [1, true, null, 1.5]} ') == {"a": [1, True, None, 1.5]}


@pytest.mark.parametrize(("text", "expected"), [
    ("a, b,,c ", ["a", "b", "c"]),
    ("app.views\napp.tasks", ["app.views", "app.tasks"]),
    ("", []),
    ('["a,b", " c "]', ["a,b", " c "]),
    ("[1, 1.5, true, false]", ["1", "1.5", "true", "false"]),
])
def test_lists(text: str, expected: list[str]) -> None:
    assert to_list(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("True", True), ("false", False), ("None", None), ("null", None), ("NULL", None),
    ("25", 25), ("1.5", 1.5), ('{"a": 1}', {"a": 1}), ('"quoted"', "quoted"),
    ("hello world", "hello world"), ("yes", "yes"), ("on", "on"), ("007", "007"),
    ("NaN", "NaN"),
])
def test_free_form_settings(text: str, expected: object) -> None:
    assert parse_value(text) == expected
    assert type(parse_value(text)) is type(expected)


def test_a_message_as_a_sentence_of_its_own() -> None:
    assert sentence(ValueError("not an integer")) == "Not an integer."
    assert sentence(ValueError("Not a JSON object.")) == "Not a JSON object."


# -- the config, a CSV column and the API read a spelling alike -------------------------------

LAMPS = """
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model, current_project
from flasker.ext.api import APIManager

current_project.register_manager(APIManager(add_all_models=True))


class Lamp(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    lit: Mapped[bool | None]
"""


@pytest.fixture
def lamps(make_project: t.Callable[..., Project], db_url: str, tmp_path: Path) -> Project:
    """A project serving the table 'lamps' (id, lit) through the API, on each database."""
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Lamps\nMODULES = {package}.models\nDB_URL = {db_url}\n",
        files={f"{package}/__init__.py": "", f"{package}/models.py": LAMPS},
        folder=tmp_path / package)
    project.metadata.create_all(project.engine)
    return project


def config_reads(tmp_path: Path, text: str) -> t.Any:
    """``[ENGINE] echo`` (a bool) given as ``text`` by an environment variable."""
    path = write_project(tmp_path / "config", "[PROJECT]\nNAME = x\n")
    return load_config(path, environ={"FLASKER__ENGINE__ECHO": text}).get("ENGINE", "echo")


def api_reads(client: t.Any, text: str) -> t.Any:
    """What ``?filter=lit:eq:TEXT`` and ``?total=TEXT`` take ``text`` for (the lamps 1 and 2)."""
    page = client.get("/api/lamps/", query_string=[
        ("filter", f"lit:eq:{text}"), ("filter", "id:lt:10"), ("total", text)])
    if page.status_code != 200:
        return page.get_json()["errors"][0]["reason"]
    ids = [lamp["id"] for lamp in page.get_json()["items"]]
    filtered = {(1,): True, (2,): False}[tuple(ids)]
    counted = "total" in page.get_json()
    return filtered if filtered == counted else ("disagree", filtered, counted)


def test_config_csv_and_api_read_every_spelling_alike(lamps: Project, tmp_path: Path) -> None:
    client = lamps.app.test_client()
    assert client.post("/api/lamps/", json={"id": 1, "lit": True}).status_code == 201
    assert client.post("/api/lamps/", json={"id": 2, "lit": False}).status_code == 201
    spellings = [*TRUE, *FALSE]
    csv_file = tmp_path / "lamps.csv"
    with csv_file.open("w", newline="") as f:
        f.write("id,lit\n")
        f.writelines(f'{10 + i},"{text}"\n' for i, text in enumerate(spellings))
    result = load_csv(lamps.engine, lamps.models()["Lamp"], csv_file)
    assert result.stopped is None and result.rows == len(spellings)
    loaded = {lamp["id"]: lamp["lit"] for lamp in
              client.get("/api/lamps/?limit=100").get_json()["items"]}

    seen = {text: (config_reads(tmp_path, text), loaded[10 + i])
            for i, text in enumerate(spellings)}
    assert seen == {text: (text in TRUE,) * 2 for text in spellings}
    # A filter's value is spelt one way, as the OpenAPI document's pattern says (lower case,
    # no blanks), so that a generated client sends nothing the server refuses: the other
    # spellings of the same booleans are a 400 that says so.
    filtered = {text: api_reads(client, text) for text in spellings}
    assert filtered == {
        text: (text in TRUE) if text == text.strip().lower()
        else f"{'lit:eq:' + text!r} is not written as the document describes"
        for text in spellings}


@pytest.mark.parametrize("text", NOT_BOOLEANS)
def test_config_csv_and_api_refuse_every_other_spelling(lamps: Project, tmp_path: Path,
                                                        text: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_reads(tmp_path, text)
    assert str(info.value) == (
        f"Config 'ENGINE.echo' has value {text!r} (environment variable 'FLASKER__ENGINE__ECHO')."
        " Not a boolean (true/false, yes/no, on/off or 1/0).")

    csv_file = tmp_path / "lamps.csv"
    csv_file.write_text(f'id,lit\n1,"{text}"\n')
    result = load_csv(lamps.engine, lamps.models()["Lamp"], csv_file)
    if text == "":  # an empty field is NULL, not a spelling of a boolean
        assert result.stopped is None and result.rows == 1
        assert lamps.app.test_client().get("/api/lamps/1").get_json() == {"id": 1, "lit": None}
    else:
        assert str(result.stopped) == (
            f"Line 2 of 'lamps.csv': field 'lit' has value {text!r}: {NOT_A_BOOLEAN}.")

    client = lamps.app.test_client()
    assert api_reads(client, text) == f"'lit:eq:{text}': {text!r} is {NOT_A_BOOLEAN}"
    page = client.get("/api/lamps/", query_string={"total": text})
    assert page.status_code == 400
    assert page.get_json()["detail"] == f"The query parameter 'total' is {NOT_A_BOOLEAN}."


def test_is_null_takes_a_boolean_and_true_when_left_out(lamps: Project) -> None:
    client = lamps.app.test_client()
    for lamp in ({"id": 1, "lit": True}, {"id": 2}):
        assert client.post("/api/lamps/", json=lamp).status_code == 201

    def ids(filter_text: str) -> list[int]:
        page = client.get("/api/lamps/", query_string={"filter": filter_text})
        assert page.status_code == 200, page.get_json()
        return [lamp["id"] for lamp in page.get_json()["items"]]

    assert ids("lit:is_null") == [2]
    assert ids("lit:is_null:yes") == [2]
    assert ids("lit:is_null:off") == [1]
    upper = client.get("/api/lamps/", query_string={"filter": "lit:is_null:OFF"})
    assert upper.status_code == 400  # one spelling in a filter: the document's
    assert ids("lit:in:true, false") == [1]
    assert ids('lit:in:["true"]') == [1]  # a JSON array of the values' spellings
    for text in ("lit:is_null:", "lit:is_null:t"):
        page = client.get("/api/lamps/", query_string={"filter": text})
        assert page.status_code == 400
        value = text.rpartition(":")[2]
        assert page.get_json()["errors"][0]["reason"] == (
            f"is_null takes true or false: {value!r} is {NOT_A_BOOLEAN}")
