"""Writing a new project from the templates beside this module."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
KINDS = ("basic", "celery")
TEXT_SUFFIXES = {".py", ".cfg", ".html", ".txt", ".md"}


@dataclass
class Written:
    """What ``new_project`` did: files written, and files left alone because they existed."""

    created: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def _sources(kind: str, with_app: bool) -> dict[Path, Path]:
    """Relative target path → template file; the kind's files win over the common ones."""
    files: dict[Path, Path] = {}
    for folder in (HERE / "common", HERE / kind):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(folder)
            if not with_app and relative.parts[0] == "app":
                continue
            files[relative] = path
    return files


def new_project(kind: str, target: Path, name: str, with_app: bool = True) -> Written:
    """Write the project ``kind`` into ``target``; an existing file is never overwritten."""
    from ..tasks import slug  # noqa: PLC0415

    if kind not in KINDS:
        raise ValueError(f"Unknown project kind {kind!r}: expected one of {', '.join(KINDS)}.")
    values = {
        "__PROJECT_NAME__": name,
        "__SECRET_KEY__": secrets.token_hex(32),
        "__QUEUE__": slug(name),
    }
    written = Written()
    for relative, source in _sources(kind, with_app).items():
        destination = target / relative
        if destination.exists():
            written.skipped.append(destination)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in TEXT_SUFFIXES:
            text = source.read_text(encoding="utf-8")
            for token, value in values.items():
                text = text.replace(token, value)
            # 'x' mode: never overwrite, even if the file appeared meanwhile.
            with destination.open("x", encoding="utf-8") as f:
                f.write(text)
        else:
            with destination.open("xb") as f:
                f.write(source.read_bytes())
        written.created.append(destination)
    return written
