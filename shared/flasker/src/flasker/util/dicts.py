"""``Dict``: a dict that measures, flattens and draws itself as table headers.

Nested dicts are branches; anything else (an empty dict included) is a leaf.
"""

from __future__ import annotations

import typing as t

from markupsafe import Markup

ESCAPE = "\\"


class Cell(t.NamedTuple):
    """One header cell of :meth:`Dict.table`; renders as a ``<th>`` in a template."""

    label: str
    colspan: int = 1
    rowspan: int = 1

    def __html__(self) -> str:
        spans = "".join(
            f' {name}="{value}"'
            for name, value in (("colspan", self.colspan), ("rowspan", self.rowspan))
            if value > 1
        )
        return str(Markup(f"<th{spans}>{{}}</th>").format(self.label))


def _is_branch(value: t.Any) -> bool:
    return isinstance(value, dict) and len(value) > 0


def _check_sep(sep: str) -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"The separator must be a non-empty string, not {sep!r}.")
    if ESCAPE in sep:
        raise ValueError(
            f"The separator {sep!r} cannot contain a backslash: it escapes separators in keys."
        )


def _escape(key: str, sep: str) -> str:
    # Escaping the separator's first character is enough for any separator: no
    # separator can then start inside a key (see 'unflatten').
    return key.replace(ESCAPE, ESCAPE * 2).replace(sep[0], ESCAPE + sep[0])


def _split(flat_key: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(flat_key):
        char = flat_key[i]
        if char == ESCAPE:
            if i + 1 == len(flat_key):
                raise ValueError(
                    f"The key {flat_key!r} ends with a lone backslash: write '\\\\' for one."
                )
            current.append(flat_key[i + 1])
            i += 2
        elif flat_key.startswith(sep, i):
            parts.append("".join(current))
            current = []
            i += len(sep)
        else:
            current.append(char)
            i += 1
    parts.append("".join(current))
    return parts


class Dict(dict[t.Any, t.Any]):
    """A ``dict`` with ``depth()``, ``width()``, ``flatten()``/``unflatten()`` and ``table()``.

    ::

        d = Dict({"name": "x", "size": {"w": 1, "h": 2}})
        d.depth()     # 2
        d.width()     # 3
        d.flatten()   # {"name": "x", "size_w": 1, "size_h": 2}
        d.flatten().unflatten() == d  # True, whatever the keys hold
    """

    def depth(self) -> int:
        """Levels of keys: 0 when empty, 1 when no value is a (non-empty) dict."""
        if not self:
            return 0
        return 1 + max((Dict(v).depth() for v in self.values() if _is_branch(v)), default=0)

    def width(self) -> int:
        """The number of leaves: the columns of :meth:`table`."""
        return sum(Dict(v).width() if _is_branch(v) else 1 for v in self.values())

    def flatten(self, sep: str = "_") -> Dict:
        """One level of keys joined by ``sep``; separators (and backslashes) inside keys
        are escaped with a backslash, so :meth:`unflatten` gives back this dict exactly."""
        _check_sep(sep)
        flat = Dict()

        def walk(node: t.Mapping[t.Any, t.Any], prefix: str) -> None:
            for key, value in node.items():
                if not isinstance(key, str):
                    where = f" under {prefix!r}" if prefix else ""
                    raise TypeError(
                        f"Cannot flatten the key {key!r} ({type(key).__name__}){where}:"
                        " flattened keys are strings, so every key must be one."
                    )
                name = prefix + _escape(key, sep)
                if _is_branch(value):
                    walk(value, name + sep)
                else:
                    flat[name] = value

        walk(self, "")
        return flat

    def unflatten(self, sep: str = "_") -> Dict:
        """Nest keys joined by ``sep`` (the inverse of :meth:`flatten`)."""
        _check_sep(sep)
        nested = Dict()
        leaves: set[tuple[str, ...]] = set()
        for flat_key, value in self.items():
            if not isinstance(flat_key, str):
                raise TypeError(
                    f"Cannot unflatten the key {flat_key!r} ({type(flat_key).__name__}):"
                    " flattened keys are strings."
                )
            parts = _split(flat_key, sep)
            node = nested
            for depth, part in enumerate(parts[:-1]):
                if tuple(parts[: depth + 1]) in leaves:
                    raise ValueError(
                        f"The key {flat_key!r} nests under {sep.join(parts[:depth + 1])!r},"
                        " which is also a value of its own."
                    )
                node = node.setdefault(part, Dict())
            if tuple(parts) in leaves:
                raise ValueError(
                    f"Two keys unflatten to {parts!r}, the last one being {flat_key!r}:"
                    " a backslash escapes only the separator and itself."
                )
            if parts[-1] in node:
                raise ValueError(f"The key {flat_key!r} is a value, but other keys nest under it.")
            node[parts[-1]] = value
            leaves.add(tuple(parts))
        return nested

    def table(self) -> list[list[Cell]]:
        """Header rows of an HTML table whose columns are this dict's leaves.

        Each key gives a cell spanning its leaves (``colspan``); a leaf above the
        last row reaches down to it (``rowspan``). In a template (a cell renders as
        its ``<th>``)::

            {% for row in columns.table() %}
              <tr>{% for cell in row %}{{ cell }}{% endfor %}</tr>
            {% endfor %}
        """
        height = self.depth()
        rows: list[list[Cell]] = [[] for _ in range(height)]

        def walk(node: Dict, level: int) -> None:
            for key, value in node.items():
                if _is_branch(value):
                    branch = Dict(value)
                    rows[level].append(Cell(str(key), branch.width(), 1))
                    walk(branch, level + 1)
                else:
                    rows[level].append(Cell(str(key), 1, height - level))

        walk(self, 0)
        return rows

    def table_html(self) -> Markup:
        """:meth:`table` as ``<tr>`` rows of ``<th>`` cells, labels escaped."""
        return Markup("").join(
            Markup("<tr>") + Markup("").join(Markup(cell.__html__()) for cell in row)
            + Markup("</tr>")
            for row in self.table()
        )

