"""``flasker shell``: interactive with the project loaded, or a script from stdin."""

from __future__ import annotations

import code
import sys
import traceback
import typing as t

import click

from ..project import Project
from .context import pass_project


@click.command()
@click.option("--plain", is_flag=True, help="Use Python's own shell even when IPython is there.")
@pass_project
def shell(project: Project, plain: bool) -> None:
    """Open a shell with 'project', 'app', 'celery', 'db' and the models ready.

    When standard input is not a terminal, run what it reads as one script inside
    the app context (as 'python - < script.py' would), exiting 1 if it raised:
    'docker compose exec -T web flasker shell < script.py'.
    """
    with project.app.app_context():
        namespace = project.app.make_shell_context()
        if not sys.stdin.isatty():
            raise SystemExit(run_script(sys.stdin.read(), namespace))
        banner = (f"flasker shell: project {project.name!r}\n"
                  f"Names: {', '.join(sorted(namespace))}")
        if not plain:
            try:
                from IPython import start_ipython  # noqa: PLC0415 (optional, and slow to import)
            except ImportError:
                pass
            else:
                start_ipython(argv=["--no-banner"], user_ns=namespace, display_banner=False)
                return
        code.interact(banner=banner, local=namespace, exitmsg="")


def run_script(source: str, namespace: dict[str, t.Any]) -> int:
    """Run ``source`` as ``__main__``; the exit status is 1 when it raised."""
    scope = {"__name__": "__main__", **namespace}
    try:
        exec(compile(source, "<stdin>", "exec"), scope)  # noqa: S102 (the user's own script)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
    return 0
