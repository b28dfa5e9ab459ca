"""``flasker load MODEL FILE.csv``: load a CSV file's rows into a model's table."""

from __future__ import annotations

import codecs
import difflib
import sys
import typing as t
from pathlib import Path

import click

from ..project import Project
from ..util.csv import CSVError
from ..util.csvload import LoadError, LoadResult, count_lines, load_csv
from .context import pass_project

if t.TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # click's private module: for the type only

SHOWN_ERRORS = 20


@click.command()
@click.argument("model")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Rows per batch (an INSERT, or a block of the streamed COPY).")
@click.option("--dry-run", is_flag=True,
              help="Read, convert and insert every row, then roll back: nothing is written.")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="stop",
              show_default=True,
              help="'stop': the first bad row rolls the whole load back. 'skip': bad rows are"
                   " left out, counted and listed.")
@click.option("--encoding", default="utf-8-sig", show_default=True,
              help="The file's text encoding (a UTF-8 byte order mark is skipped).")
@pass_project
def load(project: Project, model: str, file: Path, batch: int, dry_run: bool,
         on_error: t.Literal["skip", "stop"], encoding: str) -> None:
    """Load the rows of FILE (CSV with a header row) into the table of MODEL.

    MODEL is a class of flasker.Model in the project's MODULES. The header names
    its columns; fields are converted to the columns' types and an empty field is
    NULL (except in text columns). The load is one transaction: it is written
    whole, or (when it stops) not at all.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise click.BadParameter(f"Unknown encoding '{encoding}'.",
                                 param_hint="'--encoding'") from None

    models = project.models()
    target = models.get(model)
    if target is None:
        close = difflib.get_close_matches(model, list(models), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        names = ", ".join(f"'{m}'" for m in sorted(models)) or "none (check [PROJECT] MODULES)"
        raise click.BadParameter(f"No model named '{model}'.{hint} The project's models: {names}.",
                                 param_hint="'MODEL'")
    total = max(count_lines(file) - 1, 0)
    # The bar goes to stderr, so stdout carries the summary alone.
    bar: ProgressBar[int] = click.progressbar(length=total, label=f"Loading {file.name}",
                                              file=sys.stderr, show_pos=True)
    with bar:
        try:
            result = load_csv(project.engine, target, file, batch=batch, dry_run=dry_run,
                              on_error=on_error, progress=bar.update, encoding=encoding)
        except LoadError as e:
            cause = e.__cause__
            hint = (" Pass its encoding with '--encoding'."
                    if isinstance(cause, CSVError) and not cause.skippable else "")
            raise click.UsageError(f"{e}{hint}") from None
    _report(result)
    if result.stopped is not None:
        remedy = ("Fix the file, or pass '--on-error skip' to leave bad rows out."
                  if result.stopped.skippable else "Pass its encoding with '--encoding'.")
        raise click.ClickException(
            f"{result.stopped} Nothing was written: the whole load was rolled back. {remedy}"
        )


def _report(result: LoadResult) -> None:
    for first, last, message in result.failed_batches:
        click.echo(f"The batch of lines {first}-{last} failed and was rolled back ({message});"
                   " its rows were retried one by one.", err=True)
    if result.errors:
        click.echo(f"Skipped {_rows(len(result.errors), 'bad row')}:", err=True)
        for error in result.errors[:SHOWN_ERRORS]:
            click.echo(f"  {error}", err=True)
        if len(result.errors) > SHOWN_ERRORS:
            click.echo(f"  ... and {len(result.errors) - SHOWN_ERRORS} more.", err=True)
    if result.stopped is not None:
        return
    rate = result.rows / result.seconds if result.seconds else 0.0
    where = f"{result.model} (table '{result.table}')"
    if result.dry_run:
        click.echo(f"Dry run: {_rows(result.rows)} of {Path(result.source).name} would be loaded"
                   f" into {where}, {len(result.errors)} skipped; nothing was written.")
    else:
        click.echo(f"Loaded {_rows(result.rows)} into {where} from {Path(result.source).name}"
                   f" in {_rows(result.batches, 'batch')}, {len(result.errors)} skipped"
                   f" ({result.seconds:.1f} s, {rate:,.0f} rows/s).")


def _rows(count: int, noun: str = "row") -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{count:,} {noun if count == 1 else plural}"
