"""``flasker config`` and ``flasker routes``: what the project is made of."""

from __future__ import annotations

import json
import typing as t

import click

from ..config import mask
from ..project import Project
from .context import ProjectInfo, pass_project


def _show(value: t.Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


@click.command()
@click.option("-s", "--section", help="Only this section.")
@click.pass_obj
def config(info: ProjectInfo, section: str | None) -> None:
    """Print the effective configuration, each value with its source; secrets masked."""
    cfg = info.load_config()
    if section and section.upper() not in cfg.sections:
        names = ", ".join(f"'{name}'" for name in sorted(cfg.sections))
        raise click.BadParameter(f"The configuration has no section [{section.upper()}];"
                                 f" its sections: {names}.", param_hint="'-s' / '--section'")
    click.echo(f"# {cfg.path}")
    for name in sorted(cfg.sections):
        if section and name != section.upper():
            continue
        entries = cfg.section_entries(name)
        click.echo(f"\n[{name}]")
        width = max((len(k) for k in entries), default=0)
        for key in sorted(entries):
            entry = entries[key]
            click.echo(f"{key:<{width}} = {_show(mask(key, entry.value))}  # {entry.source}")


@click.command()
@pass_project
def routes(project: Project) -> None:
    """List the URL rules of the Flask app: endpoint, methods and rule."""
    rules = sorted(project.app.url_map.iter_rules(), key=lambda r: r.rule)
    rows = [("Endpoint", "Methods", "Rule")]
    for rule in rules:
        methods = ", ".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        rows.append((rule.endpoint, methods, rule.rule))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for i, row in enumerate(rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))
