"""``flasker auth``: who signed in, and their personal API tokens."""

from __future__ import annotations

import typing as t
from contextlib import contextmanager

import click
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from .models import AuthTokenBase, auth_models, utcnow
from .protect import allowed_now
from .state import auth_state
from .tokens import (
    DEFAULT_DAYS,
    MAX_DAYS,
    TokenError,
    create_token,
    find_by_secret,
    looks_like_token,
    revoke,
    tokens_of,
    user_by_email,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from flask import Flask

def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for i, row in enumerate((header, *rows)):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


def _when(value: t.Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def create_cli(app: Flask) -> click.Group:
    """The ``auth`` command group of ``app`` (added to ``app.cli``)."""

    @contextmanager
    def database() -> Iterator[Session]:
        with app.app_context():
            state = auth_state(app)
            try:
                with Session(state.engine) as db, db.begin():
                    yield db
            except (OperationalError, ProgrammingError) as e:
                raise click.ClickException(
                    f"The auth tables cannot be read ({type(e.orig).__name__}: {e.orig})."
                    " Create them with 'flasker db upgrade' (after 'flasker db revision'),"
                    " or 'flasker db create' in development."
                ) from e

    @click.group("auth")
    def auth() -> None:
        """Users who signed in with Google, and their personal API tokens."""

    @auth.command("users")
    def users() -> None:
        """List the users who signed in, and whether the allow-list still lets them in."""
        settings = auth_state(app).settings
        AuthUser = auth_models(app).AuthUser
        with database() as db:
            rows = [(str(u.id), u.email, u.name or "-", "yes" if allowed_now(settings, u)
                     else "no", _when(u.last_login_at), _when(u.created_at))
                    for u in db.scalars(sa.select(AuthUser).order_by(AuthUser.id))]
        if not rows:
            click.echo("No one has signed in yet.")
            return
        _table(("ID", "EMAIL", "NAME", "ALLOWED", "LAST SIGN-IN", "FIRST SIGN-IN"), rows)

    @auth.group("token")
    def token() -> None:
        """Create, list and revoke personal API tokens (sent as 'Authorization: Bearer')."""

    @token.command("create")
    @click.argument("email")
    @click.option("--expires-in", "days", type=click.IntRange(1, MAX_DAYS), default=DEFAULT_DAYS,
                  show_default=True, metavar="DAYS", help="Days until the token expires.")
    @click.option("--name", default="", help="What the token is for (shown in lists).")
    def create(email: str, days: int, name: str) -> None:
        """Create a token for the user with EMAIL; prints the token once, on standard output."""
        settings = auth_state(app).settings
        with database() as db:
            try:
                user = user_by_email(db, email)
                if not allowed_now(settings, user):
                    raise TokenError(f"{user.email!r} is not on the allow-list any more: its"
                                     " token would be refused. Add it back first.")
                row, secret = create_token(db, user, days=days, name=name)
            except TokenError as e:
                raise click.UsageError(str(e)) from e
            click.echo(f"Created token {row.id} for {user.email}, expiring"
                       f" {_when(row.expires_at)} UTC. Keep it secret: it is shown only once.",
                       err=True)
        click.echo(secret)

    @token.command("list")
    @click.option("--user", "email", help="Only the tokens of this user.")
    def list_(email: str | None) -> None:
        """List tokens: id, user, name, start of the token, dates and status."""
        now = utcnow()
        with database() as db:
            try:
                user = user_by_email(db, email) if email else None
            except TokenError as e:
                raise click.UsageError(str(e)) from e
            rows = [(str(k.id), k.user.email, k.name or "-", k.prefix + "...", _when(k.created_at),
                     _when(k.expires_at), _when(k.last_used_at), k.status(now))
                    for k in tokens_of(db, user)]
        if not rows:
            click.echo("No tokens.")
            return
        _table(("ID", "USER", "NAME", "TOKEN", "CREATED", "EXPIRES", "LAST USED", "STATUS"),
               rows)

    @token.command("revoke")
    @click.argument("tokens", nargs=-1)
    @click.option("--user", "email", help="Revoke every token of this user.")
    def revoke_(tokens: tuple[str, ...], email: str | None) -> None:
        """Revoke tokens, given by id (see 'list') or by the token itself."""
        if not tokens and not email:
            raise click.UsageError("Name the tokens to revoke (ids or tokens), or pass --user.")
        with database() as db:
            found: list[AuthTokenBase] = []
            for given in tokens:
                row = None
                if given.isdigit():
                    row = db.get(auth_models(app).AuthToken, int(given))
                elif looks_like_token(given):
                    row = find_by_secret(db, given)
                if row is None:
                    raise click.UsageError(f"No token {given!r}: give an id from"
                                           " 'flasker auth token list' or the token itself.")
                found.append(row)
            if email:
                try:
                    found.extend(tokens_of(db, user_by_email(db, email)))
                except TokenError as e:
                    raise click.UsageError(str(e)) from e
            for row in found:
                done = revoke(row)
                click.echo(f"{'Revoked' if done else 'Already revoked:'} token {row.id}"
                           f" of {row.user.email}.")

    return auth
