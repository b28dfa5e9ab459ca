"""``flasker ping``: health checks for the stack's containers, one per role."""

from __future__ import annotations

import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click

from ..project import Project
from .celery import node_name
from .context import pass_project

BODY_LIMIT = 300


@click.group()
def ping() -> None:
    """Check that a role answers: exit 0 when it does, else 1 with the reason.

    Meant for container healthchecks: 'flasker ping url', 'flasker ping worker',
    'flasker ping beat'.
    """


@ping.command()
@click.argument("url")
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for the answer.")
def url(url: str, timeout: float) -> None:
    """GET URL and succeed on a 2xx answer (such as /readyz or Flower's /healthcheck)."""
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"The URL {url!r} must start with 'http://' or 'https://'.")
    try:
        parts = urllib.parse.urlsplit(url)
        valid = bool(parts.hostname) and (parts.port or 0) >= 0  # .port checks the number
    except ValueError:
        valid = False
    if not valid:
        raise click.UsageError(f"The URL {url!r} is not a valid URL, such as"
                               " 'http://127.0.0.1:8000/readyz'.")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (scheme checked)
            status = reply.status
    except urllib.error.HTTPError as e:
        body = e.read(BODY_LIMIT).decode("utf-8", "replace").strip()
        raise click.ClickException(f"{url} answered {e.code} {e.reason}: {body}") from None
    except TimeoutError:
        raise click.ClickException(f"{url} did not answer within {timeout:g} s.") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            raise click.ClickException(f"{url} did not answer within {timeout:g} s.") from None
        raise click.ClickException(f"{url} cannot be reached: {reason}.") from None
    click.echo(f"{url}: {status}")


def _own_node(project: Project) -> str:
    from celery.utils.nodenames import host_format  # noqa: PLC0415 (Celery is slow to import)

    # '%h' is the host name, as the worker expands it for its own node name.
    return t.cast(str, host_format(node_name(project.name)))


@ping.command()
@click.option("--node", help="The worker's node name (default: this project on this host, as"
                             " 'flasker worker' names it).")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for the reply.")
@pass_project
def worker(project: Project, node: str | None, timeout: float) -> None:
    """Ping one worker node through the broker (a cheap remote-control round trip)."""
    node = node or _own_node(project)
    celery = project.celery  # a bad setting is a configuration error, not an unreachable broker
    try:
        replies = celery.control.ping(destination=[node], timeout=timeout)
    except Exception as e:  # kombu raises many kinds; each means the broker is unreachable
        raise click.ClickException(
            f"Cannot ping the worker '{node}': the broker is unreachable"
            f" ({type(e).__name__}: {e})."
        ) from None
    if not any(node in reply for reply in replies):
        raise click.ClickException(
            f"The worker '{node}' did not answer within {timeout:g} s: is 'flasker worker'"
            " running on this host, with the same broker?"
        )
    click.echo(f"{node}: pong")


@ping.command()
@click.option("--max-age", type=click.FloatRange(min=1),
              help="Seconds after which the heartbeat is stale (default: three times"
                   " beat_max_loop_interval).")
@pass_project
def beat(project: Project, max_age: float | None) -> None:
    """Check that beat's heartbeat file (touched on every tick) is fresh."""
    from ..beat import HEARTBEAT_FILE, silent_limit  # noqa: PLC0415 (it imports Celery)

    conf = project.celery.conf
    limit = max_age or silent_limit(project.celery)
    heartbeat = Path(conf.beat_schedule_filename).with_name(HEARTBEAT_FILE)
    try:
        age = time.time() - heartbeat.stat().st_mtime
    except FileNotFoundError:
        raise click.ClickException(
            f"No heartbeat file '{heartbeat}': beat has not ticked yet, or it runs with"
            " another state folder ([PROJECT] STATE_FOLDER)."
        ) from None
    if age > limit:
        raise click.ClickException(
            f"Beat's heartbeat '{heartbeat}' is {age:.0f} s old (limit {limit:g} s):"
            " beat is stuck or stopped."
        )
    click.echo(f"beat ticked {age:.0f} s ago")
