"""A wheel of the running flasker, for a new project's image (``vendor/``).

The project's image installs this file, pinned by its hash, never whatever a package index
holds under the name 'flasker': the code that wrote the project is the code that runs it.
The wheel is packed from the imported package's own folder and its installed metadata, so
it works offline, for an editable install (a source tree) as for a regular one, and the
same files give the same bytes (fixed timestamps, sorted entries), hence the same hash.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import re
import typing as t
import urllib.parse
import zipfile
from pathlib import Path

if t.TYPE_CHECKING:
    from . import Written

DISTRIBUTION = "flasker"
# The imported package's folder: the source tree of an editable install, else site-packages'.
PACKAGE = Path(__file__).resolve().parent.parent
# The metadata files of the installed distribution that a wheel carries as they are.
METADATA_FILES = ("METADATA", "entry_points.txt", "top_level.txt")
WHEEL = "Wheel-Version: 1.0\nGenerator: flasker new\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
# Zip entries dated 1980-01-01 (the earliest a zip holds): the bytes depend on the files only.
EPOCH = (1980, 1, 1, 0, 0, 0)
PIN_FILE = "flasker.txt"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')}"


def _package_files() -> dict[str, bytes]:
    """``flasker/...`` path in the wheel → content, from the imported package's folder."""
    root = PACKAGE
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"flasker/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def _check_fresh(distribution: importlib.metadata.Distribution) -> None:
    """Refuse the metadata of an editable install that predates its source's pyproject.toml.

    An editable install's metadata (dependencies, extras, entry points) is written when it
    is installed: after an edit of pyproject.toml the wheel would describe the old one.
    """
    text = distribution.read_text("direct_url.json")
    if not text:
        return
    direct = json.loads(text)
    if not direct.get("dir_info", {}).get("editable") or not direct.get("url", "").startswith(
            "file://"):
        return
    source = Path(urllib.parse.unquote(urllib.parse.urlsplit(direct["url"]).path))
    pyproject = source / "pyproject.toml"
    metadata = distribution.locate_file(f"{DISTRIBUTION}-{distribution.version}.dist-info/METADATA")
    if pyproject.is_file() and Path(str(metadata)).is_file() and (
            pyproject.stat().st_mtime > Path(str(metadata)).stat().st_mtime):
        raise RuntimeError(
            f"flasker is installed in editable mode from '{source}', whose pyproject.toml"
            f" changed since: its installed metadata is out of date. Install it again"
            f" (pip install -e '{source}') so that the wheel written into vendor/ describes"
            f" this source."
        )


def build_wheel() -> tuple[str, bytes]:
    """The running flasker as a wheel: its file name and its bytes."""
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    _check_fresh(distribution)
    version = distribution.version
    # The wheel spec's escaping of a version (a local '+' label stays, '-' becomes '_').
    safe_version = re.sub(r"[^\w\d.+]+", "_", version)
    info = f"{DISTRIBUTION}-{safe_version}.dist-info"
    files = _package_files()
    for name in METADATA_FILES:
        text = distribution.read_text(name)
        if text is not None:
            files[f"{info}/{name}"] = text.encode("utf-8")
    files[f"{info}/WHEEL"] = WHEEL.encode("ascii")
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return f"{DISTRIBUTION}-{safe_version}-py3-none-any.whl", buffer.getvalue()


def pin_line(wheel: str, data: bytes) -> str:
    """The requirement that installs exactly this wheel (pip checks the hash)."""
    return f"./vendor/{wheel} --hash=sha256:{hashlib.sha256(data).hexdigest()}\n"


def vendor_wheel(folder: Path, written: Written) -> Path:
    """Write the running flasker's wheel into ``folder``, and the requirement pinning it.

    An existing wheel of the same name is left alone (and the pin, if any, with it); a
    missing pin is written for the wheel that is there.
    """
    name, data = build_wheel()
    wheel = folder / name
    if wheel.exists():
        written.skipped.append(wheel)
        data = wheel.read_bytes()
    else:
        folder.mkdir(parents=True, exist_ok=True)
        with wheel.open("xb") as f:
            f.write(data)
        written.created.append(wheel)
    pin = folder / PIN_FILE
    if pin.exists():
        written.skipped.append(pin)
    else:
        header = ("# The flasker that wrote this project, installed by the image (Dockerfile)"
                  " and by\n# 'make test' from this very file: pip checks its hash.\n")
        with pin.open("x", encoding="utf-8") as f:
            f.write(header + pin_line(name, data))
        written.created.append(pin)
    return wheel
