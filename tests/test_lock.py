"""The image's lock: requirements.lock pins, with hashes, every package the image installs.

'make lock' writes it from requirements.in with the network; these tests read it offline and
fail when it has drifted from flasker's pyproject.toml (a dependency added, a bound moved), when
a pin lost its exactness or its hashes, or when the Dockerfile stops installing from it.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
import typing as t
from dataclasses import dataclass

import pytest
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "shared" / "flasker" / "pyproject.toml"
#: The extras the image serves: requirements.in names them, the Dockerfile's image needs them.
IMAGE_EXTRAS = ("flower", "auth")
#: The Pythons a lock must fit: the stand-in's Debian 3.11.2 and the public images' 3.11-3.13.
IMAGE_PYTHONS = ("3.11.2", "3.11.9", "3.12.7", "3.13.0")
HASH_RE = re.compile(r"\s*--hash=sha256:([0-9a-f]{64})\s*")

if t.TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Pin:
    """One requirement of a lock file, with the hashes that follow it."""

    requirement: Requirement
    hashes: tuple[str, ...]
    line: int

    @property
    def version(self) -> str:
        return next(iter(self.requirement.specifier)).version


class LockError(ValueError):
    """A lock file that is not a list of exact, hashed pins."""


def read_lock(path: Path) -> list[Pin]:
    """Parse a hashed requirements file as 'uv pip compile --generate-hashes' writes it.

    Every entry must be one ``name==version`` (with an optional marker) followed by at least
    one ``--hash=sha256:``; anything else (an option, a URL, a range) is a :class:`LockError`.
    """
    pins = []
    entry: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if not entry:
            start = number
        entry.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            pins.append(_pin(path, start, entry))
            entry = []
    if entry:
        raise LockError(f"{path.name}:{start}: the last entry ends with a '\\' continuation.")
    return pins


def _pin(path: Path, line: int, parts: list[str]) -> Pin:
    where = f"{path.name}:{line}"
    head, options = parts[0], parts[1:]
    if head.startswith("-"):
        raise LockError(f"{where}: '{head}' is an option, not a pinned package.")
    try:
        requirement = Requirement(head)
    except InvalidRequirement as e:
        raise LockError(f"{where}: '{head}' is not a requirement: {e}") from e
    specs = list(requirement.specifier)
    if requirement.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise LockError(f"{where}: '{head}' is not pinned to one version with '=='.")
    hashes = []
    for option in options:
        match = HASH_RE.fullmatch(option)
        if match is None:
            raise LockError(f"{where}: '{option}' is not a '--hash=sha256:' of '{head}'.")
        hashes.append(match.group(1))
    if not hashes:
        raise LockError(f"{where}: '{head}' has no '--hash=sha256:' line.")
    return Pin(requirement, tuple(hashes), line)


def image_requirements() -> list[Requirement]:
    """flasker's dependencies with the image's extras, and its build backend."""
    pyproject = tomllib.loads(PYPROJECT.read_text())
    project = pyproject["project"]
    names = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        names += project["optional-dependencies"][extra]
    names += pyproject["build-system"]["requires"]
    return [Requirement(name) for name in names]


def environment(python: str) -> dict[str, str]:
    """The marker environment of CPython ``python`` on x86-64 Linux, the image's platform."""
    env = t.cast("dict[str, str]", default_environment())
    env.update(
        python_version=".".join(python.split(".")[:2]),
        python_full_version=python,
        implementation_name="cpython",
        implementation_version=python,
        platform_python_implementation="CPython",
        platform_system="Linux",
        sys_platform="linux",
        os_name="posix",
        platform_machine="x86_64",
    )
    return env


def pins_for(pins: list[Pin], python: str) -> dict[str, Pin]:
    """The pins that pip installs on ``python``: one per package, or an error naming both."""
    env = environment(python)
    chosen: dict[str, Pin] = {}
    for pin in pins:
        marker = pin.requirement.marker
        if marker is not None and not marker.evaluate(env):
            continue
        name = canonicalize_name(pin.requirement.name)
        if name in chosen:
            raise LockError(
                f"requirements.lock pins '{name}' twice for Python {python} (lines "
                f"{chosen[name].line} and {pin.line}): run 'make lock'."
            )
        chosen[name] = pin
    return chosen


@pytest.fixture(scope="module")
def lock() -> list[Pin]:
    return read_lock(LOCK)


# -- the lock itself -----------------------------------------------------------------------


def test_every_pin_is_exact_and_hashed(lock: list[Pin]) -> None:
    # read_lock refuses anything else; here, what it read must be the whole image: the
    # dependencies of dependencies and of their extras too, since the image installs --no-deps.
    names = [canonicalize_name(pin.requirement.name) for pin in lock]
    transitive = {"kombu", "werkzeug", "redis", "psycopg-binary", "tornado"}
    assert transitive <= set(names), sorted(transitive - set(names))
    assert all(len(pin.hashes) >= 1 for pin in lock)
    # flasker is built from this source in the image, never taken from an index.
    assert "flasker" not in names


@pytest.mark.parametrize("python", IMAGE_PYTHONS)
def test_every_requirement_of_the_image_is_pinned_within_its_bounds(
    lock: list[Pin], python: str
) -> None:
    chosen = pins_for(lock, python)
    env = environment(python)
    drifted = []
    for requirement in image_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        pin = chosen.get(canonicalize_name(requirement.name))
        if pin is None:
            drifted.append(f"'{requirement}' has no pin")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            drifted.append(f"'{requirement}' is pinned to {pin.version}")
    assert not drifted, (
        f"requirements.lock has drifted from {PYPROJECT.relative_to(ROOT)} on Python {python}: "
        + "; ".join(drifted)
        + ". Run 'make lock' and commit requirements.lock."
    )


def test_requirements_in_names_flasker_with_the_image_extras() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert f"./shared/flasker[{','.join(IMAGE_EXTRAS)}]" in lines


def test_make_lock_compiles_requirements_in_with_hashes_for_every_platform() -> None:
    # -n prints the recipe without running it: no network, no uv needed.
    result = subprocess.run(
        ["make", "-n", "lock"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.replace("\\\n", " ").splitlines()
    compile_line = next(line for line in lines if "uv pip compile" in line)
    for flag in ("--universal", "--python-version 3.11", "--generate-hashes",
                 "--no-emit-package flasker", "--output-file requirements.lock"):
        assert flag in compile_line, compile_line
    assert compile_line.rstrip().endswith(" requirements.in"), compile_line
    # uv itself is pinned, so that the same inputs give the same lock.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^UV_VERSION := \d+\.\d+\.\d+$", makefile, re.M)
    assert "pip install -q uv==$(UV_VERSION)" in makefile


# -- read_lock refuses what would install unpinned or unchecked ------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flask>=3.0 \\\n    --hash=sha256:" + "a" * 64 + "\n", "not pinned to one version"),
        ("flask==3.* \\\n    --hash=sha256:" + "a" * 64 + "\n", "not pinned to one version"),
        ("flask==3.1.3\n", "has no '--hash=sha256:' line"),
        ("flask==3.1.3 \\\n    --hash=md5:" + "a" * 32 + "\n", "is not a '--hash=sha256:'"),
        ("--index-url https://example.invalid/simple\n", "is an option, not a pinned package"),
        ("flask @ https://example.invalid/flask.whl \\\n    --hash=sha256:" + "a" * 64 + "\n",
         "not pinned to one version"),
        ("flask==3.1.3 \\\n", "ends with a '\\' continuation"),
        ("flask=>3.1 \\\n    --hash=sha256:" + "a" * 64 + "\n", "is not a requirement"),
    ],
)
def test_read_lock_refuses_a_bad_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "requirements.lock"
    path.write_text(text)
    with pytest.raises(LockError, match=re.escape(message)) as raised:
        read_lock(path)
    assert str(raised.value).startswith("requirements.lock:1: ")


def test_pins_for_refuses_two_pins_of_one_package_for_one_python(tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    hashed = " \\\n    --hash=sha256:" + "a" * 64 + "\n"
    path.write_text(
        "redis==8.1.0 ; python_version >= '3.11'" + hashed + "redis==7.0.0" + hashed
    )
    pins = read_lock(path)
    twice = r"pins 'redis' twice for Python 3\.12\.7 \(lines 1 and 3\)"
    with pytest.raises(LockError, match=twice):
        pins_for(pins, "3.12.7")
    path.write_text(
        "redis==8.1.0 ; python_version >= '3.12'" + hashed
        + "redis==7.0.0 ; python_version < '3.12'" + hashed
    )
    assert pins_for(read_lock(path), "3.11.2")["redis"].version == "7.0.0"
    assert pins_for(read_lock(path), "3.12.7")["redis"].version == "8.1.0"


# -- the image installs the lock, and only it --------------------------------------------------


def build_stage() -> str:
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^FROM \S+ AS build$(.*?)^FROM ", dockerfile, re.M | re.S)
    assert match, "the Dockerfile has no 'build' stage followed by another"
    return match.group(1)


def test_the_image_installs_the_lock_with_hashes_before_flasker() -> None:
    stage = build_stage()
    runs = re.findall(r"^RUN (.*)$", stage, re.M)
    lock_installs = [
        run for run in runs
        if re.search(r"pip install\b[^&]*--requirement requirements\.lock", run)
    ]
    assert len(lock_installs) == 1, runs
    assert "--require-hashes" in lock_installs[0]
    assert "--no-deps" in lock_installs[0]
    # The lock's layer comes before flasker's source, so that a code change reuses it.
    copies = re.findall(r"^COPY (\S+)", stage, re.M)
    assert copies[0] == "requirements.lock", copies
    # flasker itself (every other pip install or wheel): no dependency of its own resolved, and
    # no build backend fetched.
    commands = [part.strip() for run in runs for part in run.split("&&")]
    flasker = [
        command
        for command in commands
        if re.search(r"\bpip (install|wheel)\b", command) and "requirements.lock" not in command
    ]
    assert flasker and all("--no-deps" in command for command in flasker), flasker
    assert any("--no-build-isolation" in command for command in flasker), flasker
    # Nothing else reaches an index: every other pip install is offline, from the built wheel.
    others = [
        command for command in commands
        if "pip install" in command and "requirements.lock" not in command
    ]
    assert others and all("--no-index" in command for command in others), others


def test_the_lock_reaches_the_build_context() -> None:
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in rules
