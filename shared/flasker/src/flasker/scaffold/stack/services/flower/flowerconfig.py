"""Flower settings of the flower role ('flasker flower -- --conf=<this file>').

Flower runs this file and keeps the names that are its options. It refuses to start
without credentials: Flower shows every task's arguments and results, and can revoke
tasks and shut workers down, so it is never open.
"""

from __future__ import annotations

import os
from pathlib import Path

from flasker.config import SECRET_HOWTO, weak_secret_reason


def _basic_auth() -> list[str]:
    """``user:password`` pairs from $FLOWER_BASIC_AUTH, or from the file $FLOWER_BASIC_AUTH_FILE."""
    path = os.environ.get("FLOWER_BASIC_AUTH_FILE", "").strip()
    if path:
        origin = f"the file '{path}' (FLOWER_BASIC_AUTH_FILE)"
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SystemExit(f"flower: FLOWER_BASIC_AUTH_FILE names '{path}', which cannot be"
                             f" read: {e.strerror}.") from None
    else:
        origin = "the environment variable 'FLOWER_BASIC_AUTH'"
        value = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if not value:
        raise SystemExit(
            "flower: refusing to start without credentials. Set FLOWER_BASIC_AUTH=user:password"
            " (the stack builds it from FLOWER_USER and FLOWER_PASSWORD in .env), or"
            " FLOWER_BASIC_AUTH_FILE to a file (a Docker secret) holding 'user:password'."
        )
    pairs = [pair.strip() for pair in value.split(",") if pair.strip()]
    for pair in pairs:
        user, colon, password = pair.partition(":")
        if not colon or not user:
            raise SystemExit(f"flower: {origin} must hold 'user:password' pairs separated by"
                             f" commas; one of them has no user or no ':'.")
        reason = weak_secret_reason(password)
        if reason is not None:
            raise SystemExit(f"flower: the password of '{user}' in {origin} cannot be used:"
                             f" {reason}. {SECRET_HOWTO}")
    return pairs


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"flower: the environment variable '{name}' has value {raw!r}: expected"
                         f" a whole number of at least 1, such as {default}.")
    return int(raw)


basic_auth = _basic_auth()
# Keep the tasks and workers seen across restarts, on the 'flower-data' volume, saved every
# minute as well as at shutdown.
persistent = True
db = os.environ.get("FLOWER_DB", "").strip() or "/var/lib/flower/flower.db"
state_save_interval = 60_000
# At most this many tasks are kept in memory (and in the saved state); older ones are dropped.
# Not Flower's own FLOWER_MAX_TASKS, which Flower parses before this file, with a traceback
# for a bad value.
max_tasks = _int("FLOWER_KEEP_TASKS", 10_000)
