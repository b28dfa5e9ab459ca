"""``python -m flasker.scaffold [FOLDER]``: write the reference app's stack ('make stack').

The repository's Dockerfile, compose files, Makefile, lock, .env.example, .dockerignore and
services/ are the stack's templates rendered for the reference app, the very templates
``flasker new`` renders for a new project: edit the templates, then run this. Unlike
``flasker new``, it overwrites: the files are generated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import REFERENCE, stack_files


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m flasker.scaffold [FOLDER]", file=sys.stderr)
        return 2
    folder = Path(argv[0] if argv else ".")
    for relative, content in stack_files(REFERENCE).items():
        path = folder / relative
        if path.is_file() and path.read_bytes() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
