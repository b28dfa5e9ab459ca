"""Writing a new project from the templates beside this module.

``common/`` and the kind's folder hold the app, ``default.cfg`` and the first migration;
``stack/`` holds the container stack (Dockerfile, compose, Makefile, the roles' settings),
rendered for a new project or for the repository's reference app: the repository's own
stack files are this rendering (``make stack``, checked by ``tests/test_stack_files.py``).
"""

from __future__ import annotations

import re
import secrets
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from ..config import slug
from .wheel import vendor_wheel

HERE = Path(__file__).parent
KINDS = ("basic", "celery")
TEXT_SUFFIXES = {".py", ".cfg", ".html", ".txt", ".md"}
STACK = HERE / "stack"
# Templates of the stack rendered with Jinja; every other file of stack/ is copied as it is.
RENDERED = ("Dockerfile", "compose.yaml", "compose.dev.yaml", "Makefile", "dockerignore",
            "env.example", "requirements.in")
# Stored without their leading dot: setuptools' package-data globs skip hidden files.
DOTTED = {"dockerignore": ".dockerignore", "env.example": ".env.example",
          "gitignore": ".gitignore"}


@dataclass
class Written:
    """What ``new_project`` did: files written, and files left alone because they existed."""

    created: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """What the stack's templates are rendered for: a new project, or the reference app.

    :param name: the compose project's name and the image's ('acme', 'flasker').
    :param title: the project's name, for humans ('Acme').
    :param wheel: the file name of the flasker wheel in a new project's ``vendor/``;
        ``None`` for the repository, whose image builds flasker from its source.
    """

    name: str
    title: str
    wheel: str | None = None

    @property
    def reference(self) -> bool:
        return self.wheel is None


# The repository's stack serves the reference app (reference/) and builds flasker itself.
REFERENCE = Layout(name="flasker", title="flasker")


def _files(folder: Path) -> t.Iterator[tuple[Path, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(folder), path


def _sources(kind: str, with_app: bool) -> dict[Path, Path]:
    """Relative target path → template file; the kind's files win over the common ones."""
    files: dict[Path, Path] = {}
    if with_app:
        # Alembic's environment, as 'flasker db' writes it; the first revision is common/'s.
        for name in ("env.py", "script.py.mako"):
            files[Path("migrations", name)] = HERE / "migrations" / name
    for folder in (HERE / "common", HERE / kind):
        for relative, path in _files(folder):
            if not with_app and relative.parts[0] in ("app", "migrations", "tests"):
                continue
            files[Path(DOTTED.get(relative.as_posix(), relative.as_posix()))] = path
    return files


# A line '#% if ...' of a template: a comment to every format of the stack.
LINE_STATEMENT = re.compile(r"^#%[ \t]*(.*?)[ \t]*$", re.MULTILINE)


class _StackLoader(jinja2.FileSystemLoader):
    """Reads a line ``#% stmt`` as a block ``{% stmt %}`` that takes its own line away.

    Jinja's own line statements take the blank lines after them away too.
    """

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, t.Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return LINE_STATEMENT.sub(r"{% \1 %}", source), filename, uptodate


def _environment() -> jinja2.Environment:
    """Jinja with delimiters that the stack's own syntax never uses.

    Compose and Make write ``${VAR}`` and ``$$``, the Makefile passes ``{{...}}`` to
    ``docker inspect`` and compose holds ``${#VAR}``: the templates mark variables
    ``{= name =}`` and whole lines ``#% if ...``.
    """
    return jinja2.Environment(
        loader=_StackLoader(STACK),
        variable_start_string="{=",
        variable_end_string="=}",
        comment_start_string="{##",
        comment_end_string="##}",
        trim_blocks=True,  # a block's line ends with it
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def stack_files(layout: Layout) -> dict[Path, bytes]:
    """The stack's files for ``layout``: relative path → content."""
    environment = _environment()
    files: dict[Path, bytes] = {}
    for relative, path in _files(STACK):
        name = relative.as_posix()
        target = Path(DOTTED.get(name, name))
        if name in RENDERED:
            text = environment.get_template(name).render(layout=layout)
            files[target] = text.encode("utf-8")
        else:
            files[target] = path.read_bytes()
    return files


def _write(destination: Path, content: bytes, written: Written) -> None:
    if destination.exists():
        written.skipped.append(destination)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    # 'x' mode: never overwrite, even if the file appeared meanwhile.
    with destination.open("xb") as f:
        f.write(content)
    written.created.append(destination)


def new_project(kind: str, target: Path, name: str, with_app: bool = True,
                with_stack: bool = True) -> Written:
    """Write the project ``kind`` into ``target``; an existing file is never overwritten.

    With ``with_stack``, the container stack too, and in ``vendor/`` a wheel of the very
    flasker running this, which the project's image installs (pinned by its hash).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown project kind {kind!r}: expected one of {', '.join(KINDS)}.")
    values = {
        "__PROJECT_NAME__": name,
        "__SECRET_KEY__": secrets.token_hex(32),
        "__QUEUE__": slug(name),
    }
    written = Written()
    for relative, source in _sources(kind, with_app).items():
        content = source.read_bytes()
        if source.suffix in TEXT_SUFFIXES:
            text = content.decode("utf-8")
            for token, value in values.items():
                text = text.replace(token, value)
            content = text.encode("utf-8")
        _write(target / relative, content, written)
    if with_stack:
        wheel = vendor_wheel(target / "vendor", written)
        layout = Layout(name=slug(name), title=name, wheel=wheel.name)
        for relative, content in stack_files(layout).items():
            _write(target / relative, content, written)
    return written
