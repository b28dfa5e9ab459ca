"""``Loggable``: a mixin giving objects a logger and messages that say which object speaks;
``one_line``: an error as one line of a log.
"""

from __future__ import annotations

import logging
import typing as t


class Loggable:
    """Give a class ``self.logger`` and ``debug/info/warning/error`` prefixed by ``repr(self)``.

    The logger is named after the class's module and name (``app.models.House``),
    so levels can be set per class. Messages take ``%``-style arguments and the
    keyword arguments of :meth:`logging.Logger.log` (``exc_info``, ``extra``).

    ::

        class House(Loggable, Model):
            def sell(self) -> None:
                self.info("sold for %s", self.price)  # "<House id=1> sold for 300000"
    """

    @property
    def logger(self) -> logging.Logger:
        cls = type(self)
        return logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")

    def _log(self, level: int, msg: str, args: tuple[t.Any, ...], kwargs: dict[str, t.Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return  # repr() may be costly (a model's may load its key): skip it when unused
        prefix = repr(self)
        if args:
            # The message will be %-formatted: a '%' in the repr must survive it.
            msg = prefix.replace("%", "%%") + " " + msg
        else:
            msg = f"{prefix} {msg}"
        kwargs.setdefault("stacklevel", 3)  # the caller of info(), not this module
        logger.log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: t.Any, **kwargs: t.Any) -> None:
        self._log(logging.DEBUG, msg, args, kwargs)

    def info(self, msg: str, *args: t.Any, **kwargs: t.Any) -> None:
        self._log(logging.INFO, msg, args, kwargs)

    def warning(self, msg: str, *args: t.Any, **kwargs: t.Any) -> None:
        self._log(logging.WARNING, msg, args, kwargs)

    def error(self, msg: str, *args: t.Any, **kwargs: t.Any) -> None:
        self._log(logging.ERROR, msg, args, kwargs)


def one_line(error: BaseException) -> str:
    """``error`` as one line for a log: its type and its message's first line.

    A driver's error wrapped by SQLAlchemy is told by its own (``orig``): the line names
    ``AdminShutdown``, not ``OperationalError``.
    """
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(original).__name__}: {line}" if line else type(original).__name__
