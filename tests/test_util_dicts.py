"""``Dict``: depth, width, a lossless flatten/unflatten, and table header rows."""

from __future__ import annotations

import random
import typing as t

import pytest
from jinja2 import Environment

from flasker.util import Dict
from flasker.util.dicts import Cell

NESTED = {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}}


def test_depth_and_width() -> None:
    assert Dict().depth() == 0
    assert Dict().width() == 0
    assert Dict({"a": 1, "b": 2}).depth() == 1
    assert Dict({"a": 1, "b": 2}).width() == 2
    assert Dict(NESTED).depth() == 3
    assert Dict(NESTED).width() == 4
    # An empty dict is a leaf: a column with no sub-columns.
    assert Dict({"a": {}}).depth() == 1
    assert Dict({"a": {}, "b": {"c": {}}}).width() == 2


def test_flatten_and_unflatten() -> None:
    flat = Dict(NESTED).flatten()
    assert flat == {"a": 1, "b_c": 2, "b_d_e": 3, "b_d_f": 4}
    assert isinstance(flat, Dict)
    back = flat.unflatten()
    assert back == NESTED
    assert isinstance(back["b"], Dict) and isinstance(back["b"]["d"], Dict)
    assert Dict(NESTED).flatten(sep=".") == {"a": 1, "b.c": 2, "b.d.e": 3, "b.d.f": 4}


def test_separators_inside_keys_are_escaped() -> None:
    data = {"first_name": "Ann", "address": {"zip_code": "01234", "a\\b": 1}}
    flat = Dict(data).flatten()
    assert flat == {"first\\_name": "Ann", "address_zip\\_code": "01234", "address_a\\\\b": 1}
    assert flat.unflatten() == data


def test_empty_dicts_and_empty_keys_survive_the_round_trip() -> None:
    data = {"": {"": 1, "x": {}}, "_": {"_": "_"}, "e": {}}
    for sep in ("_", "__", ".", "->"):
        assert Dict(data).flatten(sep).unflatten(sep) == data


def test_round_trip_is_lossless_for_random_keys() -> None:
    rng = random.Random(4)
    alphabet = "ab_.\\-> "

    def build(level: int) -> dict[str, t.Any]:
        node: dict[str, t.Any] = {}
        for _ in range(rng.randint(0, 4)):
            key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
            node[key] = build(level + 1) if level < 3 and rng.random() < 0.4 else rng.random()
        return node

    for _ in range(300):
        data = build(0)
        for sep in ("_", "__", "._", "->"):
            assert Dict(data).flatten(sep).unflatten(sep) == data, (data, sep)


def test_bad_separators_and_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        Dict(NESTED).flatten("")
    with pytest.raises(ValueError, match="cannot contain a backslash"):
        Dict(NESTED).flatten("\\")
    with pytest.raises(TypeError, match=r"Cannot flatten the key 1 \(int\) under 'b_'"):
        Dict({"b": {1: "x"}}).flatten()
    with pytest.raises(ValueError, match="lone backslash"):
        Dict({"a\\": 1}).unflatten()
    with pytest.raises(ValueError, match="nests under 'a', which is also a value"):
        Dict({"a": 1, "a_b": 2}).unflatten()
    with pytest.raises(ValueError, match="is a value, but other keys nest under it"):
        Dict({"a_b": 2, "a": 1}).unflatten()
    with pytest.raises(TypeError, match="flattened keys are strings"):
        Dict({1: 2}).unflatten()


def test_table_spans() -> None:
    rows = Dict(NESTED).table()
    assert rows == [
        [Cell("a", 1, 3), Cell("b", 3, 1)],
        [Cell("c", 1, 2), Cell("d", 2, 1)],
        [Cell("e", 1, 1), Cell("f", 1, 1)],
    ]
    assert Dict({"x": 1, "y": 2}).table() == [[Cell("x"), Cell("y")]]
    assert Dict().table() == []
    data = {"p": {"q": {"r": 1, "s": 1}, "t": 1}, "u": {"v": 1}, "w": {}}
    grid = _layout(Dict(data).table())
    # Laid out as a browser does, the cells tile the header exactly, leaves at the bottom.
    assert grid == [
        ["p", "p", "p", "u", "w"],
        ["q", "q", "t", "v", "w"],
        ["r", "s", "t", "v", "w"],
    ]


def _layout(rows: list[list[Cell]]) -> list[list[str]]:
    """Place the cells in a grid as HTML does: each in the next free slot of its row."""
    grid: dict[tuple[int, int], str] = {}
    for y, row in enumerate(rows):
        x = 0
        for cell in row:
            while (y, x) in grid:
                x += 1
            for dy in range(cell.rowspan):
                for dx in range(cell.colspan):
                    assert (y + dy, x + dx) not in grid, "cells overlap"
                    grid[y + dy, x + dx] = cell.label
            x += cell.colspan
    height = len(rows)
    width = max(x for _, x in grid) + 1
    assert len(grid) == height * width, "the header has holes"
    return [[grid[y, x] for x in range(width)] for y in range(height)]


def test_table_renders_in_a_template_with_labels_escaped() -> None:
    env = Environment(autoescape=True)
    template = env.from_string(
        "{% for row in d.table() %}<tr>{% for cell in row %}{{ cell }}{% endfor %}</tr>{% endfor %}"
    )
    html = template.render(d=Dict({"<b>": 1, "g": {"h": 1, "i": 2}}))
    assert html == (
        '<tr><th rowspan="2">&lt;b&gt;</th><th colspan="2">g</th></tr>'
        "<tr><th>h</th><th>i</th></tr>"
    )
    assert Dict({"<b>": 1, "g": {"h": 1, "i": 2}}).table_html() == html
