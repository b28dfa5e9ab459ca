"""A lease on the task messages a live worker holds, for Redis and the embedded broker.

**Redis** has no acknowledgements of its own: kombu keeps every message a worker has
received and not yet acknowledged in the ``unacked`` hash, indexed by delivery time
in the ``unacked_index`` sorted set, and every consuming worker moves back to the
queue the messages delivered more than ``visibility_timeout`` seconds ago
(``QoS.restore_visible``). That is how the messages of a worker that vanished
(SIGKILL, an OOM kill, a lost host) reach another worker; but a task still running
past that timeout on a live worker is handed out a second time.

The lease makes the timeout short without that risk, as SQS's
ChangeMessageVisibility does: every ``visibility_timeout / 3`` seconds the worker
moves the time of each message it still holds to now (``ZADD unacked_index XX``, one
command for all of them; ``XX`` never brings back a message acknowledged or restored
meanwhile). A live worker keeps its messages for as long as their tasks run, up to
the hard time limit; a dead one stops renewing, and its messages go back to the
queue within ``visibility_timeout`` (plus the sweep interval).

The renewals run in a thread of the worker's main process rather than on the
consumer's event loop, which stands still while tasks are still running: during
Celery's soft shutdown (its signal handler sleeps), during a warm shutdown (the loop
has ended, the pool waits for its tasks) and for the whole of a task in the ``solo``
pool. The thread ends with the process.

**The embedded broker** (kombu's SQLAlchemy transport, ``sqla+sqlite:///broker.sqlite``)
has no timeout at all: a worker takes a message by setting its row's ``visible`` to false,
acknowledges it in memory only (the row stays, invisible, for good) and hands it back by
inserting a copy. A worker killed with SIGKILL left the messages it held invisible for
ever, and an invisible row does not say whether its task ended or its worker died.

flasker's transport (:class:`SQLTransport`, chosen for every ``sqla+`` URL by the Celery
app's :class:`LeasedAMQP`) records that, in two tables of its own in the broker's database:
``flasker_leases`` holds the id of every message a worker has taken and not yet
acknowledged, rejected or handed back, with its holder (a channel of one process:
``host:pid:random``); ``flasker_lease_holders`` holds each holder's heartbeat. The lease
row is written in the very transaction that takes the message (a SQLAlchemy
``after_update`` event on kombu's message class), and deleted when the message is
acknowledged or rejected, or in the transaction that puts its copy back: a message is
never held without a lease, nor handed back while it keeps one. A thread of the worker's
main process renews the heartbeat every ``visibility_timeout / 3`` seconds and sweeps: the
messages whose holder's heartbeat is older than ``visibility_timeout`` (30 s) are made
visible again, in one transaction that also drops their leases. Only the ``visible``
column of kombu's rows is ever written. A killed worker's tasks run again within
``visibility_timeout`` plus a sweep interval, on another worker or on itself restarted; a
live worker's heartbeat keeps its tasks, however long they run. Heartbeat times are each
process's wall clock: workers on several hosts (a server database as the broker) need
clocks that agree to well within the timeout. A consumer without acknowledgements
(``no_ack``) takes no lease. ``visibility_timeout`` and kombu's own ``polling_interval``
are accepted in ``broker_transport_options``; kombu's transport handed both to
SQLAlchemy's ``create_engine``, which refused them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
import typing as t

import sqlalchemy as sa
from celery import bootsteps
from celery.app.amqp import AMQP
from kombu.connection import Connection
from kombu.transport import sqlalchemy as kombu_sql
from sqlalchemy import orm
from sqlalchemy.schema import CreateIndex, CreateTable

from .config import ConfigError

logger = logging.getLogger(__name__)

#: flasker's defaults for a Redis broker; ``[CELERY] broker_transport_options`` wins.
REDIS_TRANSPORT_OPTIONS: dict[str, t.Any] = {
    # A message whose worker stopped renewing its lease goes back to the queue this
    # many seconds after the last renewal (renewals come every third of it).
    "visibility_timeout": 30,
    # Every worker sweeps for such messages every 5 s (kombu: every 10 s x 10).
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    # The sweep's lock: a worker killed while holding it blocks the others this long.
    "unacked_mutex_expire": 30,
}

RENEWALS_PER_TIMEOUT = 3


def renewal_interval(visibility_timeout: float) -> float:
    """Seconds between renewals: a lease survives two missed renewals."""
    return max(float(visibility_timeout) / RENEWALS_PER_TIMEOUT, 0.5)


def held_tags(qos: t.Any) -> list[str]:
    """The delivery tags the channel holds: received, not yet acknowledged or rejected.

    ``_delivered`` belongs to the consuming thread; copying it is one C call under the
    GIL, retried in the unlikely case it changed size meanwhile.
    """
    for _ in range(3):
        try:
            delivered = tuple(qos._delivered)
            dirty = frozenset(qos._dirty)
        except RuntimeError:
            continue
        return [tag for tag in delivered if tag not in dirty]
    return []


def renew(qos: t.Any) -> tuple[int, int]:
    """Move the time of every message ``qos`` holds to now: ``(renewed, held)``.

    One ``ZADD XX CH`` for all of them: a message acknowledged, rejected or restored
    since the copy is no longer in the index and stays out of it.
    """
    tags = held_tags(qos)
    if not tags:
        return 0, 0
    now = time.time()
    with qos.channel.conn_or_acquire() as client:
        renewed = client.zadd(qos.unacked_index_key, dict.fromkeys(tags, now), xx=True, ch=True)
    return int(renewed), len(tags)


def is_redis_qos(qos: t.Any) -> bool:
    """Whether ``qos`` is kombu's Redis ack emulation (the only one with an unacked index)."""
    if getattr(getattr(qos, "channel", None), "ack_emulation", False) is not True:
        return False
    from kombu.transport import redis  # noqa: PLC0415 (needs the redis client, a Redis broker's)

    return isinstance(qos, redis.QoS)


class _Renewer:
    """A thread of the worker's main process that calls :meth:`tick` every ``interval``.

    :param timeout: the visibility timeout the renewals keep from lapsing.
    :param broker: the broker as a log line names it.
    """

    def __init__(self, timeout: float, broker: str) -> None:
        self.timeout = float(timeout)
        self.interval = renewal_interval(self.timeout)
        self.broker = broker
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flasker-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError

    def failed(self, error: Exception) -> None:
        """One renewal failed: a warning (the thread goes on, and tries again next time)."""
        logger.warning(
            "Could not renew the lease of the task messages this worker holds (%s: %s);"
            " retrying in %.0f s. If %s stays unreachable past the visibility timeout"
            " (%.0f s), their tasks may run again on another worker.",
            type(error).__name__, error, self.interval, self.broker, self.timeout)


class Lease(_Renewer):
    """The thread that renews the lease of the messages one channel holds."""

    def __init__(self, qos: t.Any) -> None:
        super().__init__(qos.visibility_timeout, "Redis")
        self.qos = qos

    def start(self) -> None:
        super().start()
        logger.debug("Renewing the lease of held task messages every %.1f s (visibility"
                     " timeout %s s).", self.interval, self.qos.visibility_timeout)

    def follow(self, qos: t.Any) -> None:
        """Renew the messages of ``qos`` from now on (the channel of a new connection)."""
        self.qos = qos

    def tick(self) -> None:
        qos = self.qos
        if getattr(qos.channel, "closed", False):
            return  # its connection was lost: the consumer is connecting again
        try:
            renewed, held = renew(qos)
        except Exception as e:  # noqa: BLE001 (the thread must outlive any broker error)
            self.failed(e)
            return
        if held:
            logger.debug("Renewed the lease of %d of %d held task message(s).", renewed, held)


class LeaseStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """The consumer's bootstep that keeps the lease of its task messages (Redis only)."""

    label = "Lease"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: t.Any, **kwargs: t.Any) -> None:
        self.lease: Lease | None = None
        super().__init__(parent, **kwargs)

    def start(self, parent: t.Any) -> None:
        consumer = parent.task_consumer
        qos = getattr(getattr(consumer, "channel", None), "qos", None)
        if qos is None or not is_redis_qos(qos):
            return
        if self.lease is None:
            self.lease = Lease(qos)
            self.lease.start()
        else:
            self.lease.follow(qos)

    def stop(self, parent: t.Any) -> None:
        # Called on a lost connection and at a warm shutdown, while tasks may still run:
        # the lease goes on until the messages are acknowledged or handed back.
        pass

    def shutdown(self, parent: t.Any) -> None:
        if self.lease is not None:
            self.lease.stop()
            self.lease = None


# -- the embedded broker: kombu's SQLAlchemy transport ----------------------------------------

#: The URL prefixes of kombu's SQLAlchemy transport (``sqla+sqlite:///broker.sqlite``).
SQL_SCHEMES = ("sqla+", "sqlalchemy+")

#: flasker's defaults for a SQL broker; ``[CELERY] broker_transport_options`` wins. A
#: message whose worker's heartbeat is older than this goes back to the queue.
SQL_TRANSPORT_OPTIONS: dict[str, t.Any] = {"visibility_timeout": 30}

# The options of flasker's SQL transport: the lease's timeout, and kombu's own
# 'polling_interval' (the seconds a worker waits before asking again when it found no
# message or had no room for one; 1 s). kombu's SQL transport hands every option but
# those it knows (kombu 5.7's list below) to SQLAlchemy's create_engine, which refuses
# either: flasker's takes them out first.
_OWN_OPTIONS = frozenset({"visibility_timeout", "polling_interval"})
_KOMBU_OPTIONS = frozenset({"queue_tablename", "message_tablename", "callback", "errback",
                            "max_retries", "interval_start", "interval_step", "interval_max",
                            "retry_errors"})

# Where a kombu session keeps its channel, for the event that records a take.
_CHANNEL_KEY = "flasker.lease.channel"

# kombu's classes are typed in part only: flasker's subclasses take them as untyped.
_KombuChannel: t.Any = kombu_sql.Channel
_KombuTransport: t.Any = kombu_sql.Transport
_KombuConnection: t.Any = Connection

lease_metadata = sa.MetaData()

#: One row per holder (a consuming channel of one process) and its last heartbeat.
holders = sa.Table(
    "flasker_lease_holders", lease_metadata,
    sa.Column("holder", sa.String(200), primary_key=True),
    sa.Column("heartbeat", sa.Float, nullable=False),  # seconds since the epoch
)

#: One row per message taken and not yet acknowledged, rejected or handed back.
leases = sa.Table(
    "flasker_leases", lease_metadata,
    sa.Column("message_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("holder", sa.String(200), nullable=False, index=True),
)


def sql_visibility_timeout(options: t.Mapping[str, t.Any]) -> float:
    """The lease's timeout from the transport options: a positive number of seconds."""
    value = options.get("visibility_timeout", SQL_TRANSPORT_OPTIONS["visibility_timeout"])
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"Config 'CELERY.broker_transport_options' has visibility_timeout {value!r}:"
            " expected a positive number of seconds, such as 30 (a stopped worker's tasks"
            " go back to the queue this long after its last heartbeat)."
        )
    return float(value)


def own_options(client: t.Any) -> dict[str, t.Any]:
    """The transport options of a connection, with those :class:`LeasedConnection` set apart."""
    return {**client.transport_options, **getattr(client, "sql_options", {})}


def create_lease_tables(engine: sa.Engine) -> None:
    """Create the lease's tables in the broker's database unless they exist (any worker)."""
    with engine.begin() as connection:
        for table in lease_metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))


@contextlib.contextmanager
def _writing(engine: sa.Engine) -> t.Iterator[sa.Connection]:
    """A transaction that holds SQLite's write lock from its start, as kombu's ``_get`` does.

    Its reads and writes then see one state: no other worker takes, sweeps or renews
    between them.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


def _dead_holders(cutoff: float) -> sa.CompoundSelect[str]:
    """The holders whose heartbeat is older than ``cutoff``, or whose row is gone."""
    return sa.union(
        sa.select(holders.c.holder).where(holders.c.heartbeat < cutoff),
        sa.select(leases.c.holder).where(leases.c.holder.not_in(sa.select(holders.c.holder))),
    )


def sweep(engine: sa.Engine, messages: sa.Table, timeout: float) -> tuple[int, list[str]]:
    """Make visible again the messages of dead holders: ``(messages returned, holders)``.

    A read first, so that a sweep that finds nothing (nearly all) takes no write lock.
    """
    dead_query = _dead_holders(time.time() - timeout)
    with engine.connect() as connection:
        if not connection.execute(dead_query).first():
            return 0, []
    with _writing(engine) as connection:
        dead = list(connection.execute(dead_query).scalars())
        if not dead:
            return 0, []
        held = sa.select(leases.c.message_id).where(leases.c.holder.in_(dead))
        returned = connection.execute(
            sa.update(messages)
            .where(messages.c.id.in_(held), messages.c.visible == sa.false())
            # Only 'visible': naming 'timestamp' keeps kombu's onupdate from touching it.
            .values({messages.c.visible: True, messages.c.timestamp: messages.c.timestamp})
        ).rowcount
        connection.execute(sa.delete(leases).where(leases.c.holder.in_(dead)))
        connection.execute(sa.delete(holders).where(holders.c.holder.in_(dead)))
    return int(returned), dead


def _record_take(_mapper: t.Any, connection: sa.Connection, message: t.Any) -> None:
    """``after_update`` of kombu's message: a flasker channel took it, so lease it.

    In the transaction of the take: the message is never held without its lease.
    """
    session = orm.object_session(message)
    channel = session.info.get(_CHANNEL_KEY) if session is not None else None
    if not isinstance(channel, SQLChannel) or channel.heartbeat is None or not channel.leasing:
        return
    if False not in sa.inspect(message).attrs.visible.history.added:
        return  # not a take: kombu updates a message only to take it, but be sure
    connection.execute(sa.delete(leases).where(leases.c.message_id == message.id))
    connection.execute(sa.insert(leases).values(message_id=message.id, holder=channel.holder))
    channel.taken = message.id


class SQLChannel(_KombuChannel):  # type: ignore[misc]
    """kombu's SQLAlchemy channel, holding every message it takes under a lease."""

    def __init__(self, connection: t.Any, **kwargs: t.Any) -> None:
        self.lease_timeout = sql_visibility_timeout(own_options(connection.client))
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.heartbeat: Heartbeat | None = None  # started by the first take
        #: Whether the current ``_get`` leases what it takes: not for a consumer without
        #: acknowledgements (``no_ack``: Celery's remote control), which never releases.
        self.leasing = True
        #: The id of the message the current ``_get`` took (set by :func:`_record_take`).
        self.taken: int | None = None
        self._held: dict[str, int] = {}  # delivery tag → message id, of the leases it holds
        self._held_lock = threading.Lock()
        self._no_ack_queues: set[str] = set()
        self._no_ack_get = False
        super().__init__(connection, **kwargs)

    def _engine_from_config(self) -> sa.Engine:
        # As kombu's, less the options of this transport, which create_engine would refuse.
        client = self.connection.client
        options = {key: value for key, value in client.transport_options.items()
                   if key not in _KOMBU_OPTIONS | _OWN_OPTIONS}
        return sa.create_engine(client.hostname, **options)

    @property
    def session(self) -> orm.Session:
        session: orm.Session = super().session
        session.info.setdefault(_CHANNEL_KEY, self)
        return session

    def held_ids(self) -> list[int]:
        with self._held_lock:
            return list(self._held.values())

    def _start_lease(self) -> None:
        engine, _ = self._open()
        create_lease_tables(engine)
        cls = self.message_cls
        if not sa.event.contains(cls, "after_update", _record_take):
            sa.event.listen(cls, "after_update", _record_take)
        heartbeat = Heartbeat(self, engine)
        heartbeat.join()
        self.heartbeat = heartbeat
        heartbeat.start()

    def basic_consume(self, queue: str, no_ack: bool, *args: t.Any, **kwargs: t.Any) -> t.Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: t.Any) -> t.Any:
        self._no_ack_get = no_ack
        try:
            return super().basic_get(queue, no_ack=no_ack, **kwargs)
        finally:
            self._no_ack_get = False

    def _get(self, queue: str) -> t.Any:
        if self.heartbeat is None:
            self._start_lease()
        self.taken = None
        self.leasing = not (self._no_ack_get or queue in self._no_ack_queues)
        payload = super()._get(queue)  # the lease is written in its transaction
        if self.taken is not None:
            with self._held_lock:
                self._held[payload["properties"]["delivery_tag"]] = self.taken
        return payload

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)
        if not requeue:  # else _restore dropped its lease, with the copy it put back
            self._release(delivery_tag)

    def _restore(self, message: t.Any) -> None:
        """Hand a message back (a copy, as kombu does) and drop its lease, in one transaction."""
        with self._held_lock:
            message_id = self._held.get(message.delivery_tag)
        if message_id is not None:
            self.session.execute(sa.delete(leases).where(leases.c.message_id == message_id,
                                                         leases.c.holder == self.holder))
        try:
            super()._restore(message)  # commits the copy and the delete together
        except BaseException:
            self.session.rollback()  # neither: the lease stays, so a sweep returns it
            raise
        with self._held_lock:
            self._held.pop(message.delivery_tag, None)

    def _release(self, delivery_tag: str) -> None:
        with self._held_lock:
            message_id = self._held.pop(delivery_tag, None)
        if message_id is not None and self.heartbeat is not None:
            self.heartbeat.release(message_id)

    def close(self) -> None:
        was_open = not self.closed
        super().close()  # hands back the messages it still holds (kombu's restore)
        heartbeat, self.heartbeat = self.heartbeat, None
        if was_open and heartbeat is not None:
            heartbeat.leave()


class Heartbeat(_Renewer):
    """The thread that keeps one channel's lease alive and returns the messages of dead ones.

    Every ``visibility_timeout / 3`` seconds: the releases that failed are tried again,
    the holder's heartbeat is renewed, and the leases of holders silent for longer than
    ``visibility_timeout`` are swept.
    """

    def __init__(self, channel: SQLChannel, engine: sa.Engine) -> None:
        super().__init__(channel.lease_timeout, "the broker's database")
        self.channel = channel
        self.engine = engine
        self.holder = channel.holder
        self.messages: sa.Table = channel.message_cls.__table__
        self._unreleased: set[int] = set()  # message ids whose release failed
        self._lock = threading.Lock()

    def join(self) -> None:
        """Register the holder before its first take, and return what dead holders left."""
        with _writing(self.engine) as connection:
            connection.execute(sa.delete(holders).where(holders.c.holder == self.holder))
            connection.execute(sa.insert(holders).values(holder=self.holder,
                                                         heartbeat=time.time()))
        self.sweep()
        logger.info("Holding task messages under a lease as '%s': heartbeat every %.1f s, a"
                    " stopped worker's tasks return to the queue %.0f s after its last.",
                    self.holder, self.interval, self.timeout)

    def tick(self) -> None:
        try:
            self._release_pending()
            self.beat()
            self.sweep()
        except Exception as e:  # noqa: BLE001 (the thread must outlive any database error)
            self.failed(e)

    def release(self, message_id: int) -> None:
        """Drop the lease of an acknowledged or rejected message; retried by the thread."""
        with self._lock:
            self._unreleased.add(message_id)
        try:
            self._release_pending()
        except Exception as e:  # noqa: BLE001 (an acknowledgement must not fail on it)
            logger.warning("Could not drop the lease of an acknowledged task message (%s: %s);"
                           " retrying in %.0f s.", type(e).__name__, e, self.interval)

    def _release_pending(self) -> None:
        with self._lock:
            ids = sorted(self._unreleased)
        if not ids:
            return
        with self.engine.begin() as connection:
            connection.execute(sa.delete(leases).where(leases.c.message_id.in_(ids),
                                                       leases.c.holder == self.holder))
        with self._lock:
            self._unreleased.difference_update(ids)

    def beat(self) -> None:
        """Renew the holder's heartbeat; take its messages back if it was taken for dead."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                sa.update(holders).where(holders.c.holder == self.holder)
                .values(heartbeat=time.time())).rowcount
        if not renewed:
            self._rejoin()
        elif held := len(self.channel.held_ids()):
            logger.debug("Renewed the lease of %d held task message(s).", held)

    def _rejoin(self) -> None:
        """Another worker swept this live one (no heartbeat for a timeout): register again.

        Each message it holds that is still in the queue is taken back under its lease;
        one another worker took meanwhile runs there too.
        """
        held = self.channel.held_ids()
        back = 0
        messages = self.messages
        with _writing(self.engine) as connection:
            connection.execute(sa.insert(holders).values(holder=self.holder,
                                                         heartbeat=time.time()))
            for message_id in held:
                if connection.execute(
                        sa.update(messages)
                        .where(messages.c.id == message_id, messages.c.visible == sa.true())
                        .values({messages.c.visible: False,
                                 messages.c.timestamp: messages.c.timestamp})).rowcount:
                    connection.execute(sa.delete(leases).where(leases.c.message_id == message_id))
                    connection.execute(sa.insert(leases).values(message_id=message_id,
                                                                holder=self.holder))
                    back += 1
        logger.warning(
            "This worker's lease had lapsed (no heartbeat for over %.0f s: the broker's"
            " database was unreachable or the process stalled) and another worker returned"
            " its task messages to the queue: %d of the %d it holds were taken back, the"
            " others may run on another worker too.", self.timeout, back, len(held))

    def sweep(self) -> int:
        """Return to the queue the messages of holders without a heartbeat for a timeout."""
        returned, dead = sweep(self.engine, self.messages, self.timeout)
        if dead:
            logger.warning(
                "Returned %d task message(s) to the queue: their worker stopped (no heartbeat"
                " for %.0f s from %s).", returned, self.timeout, ", ".join(sorted(dead)))
        return returned

    def leave(self) -> None:
        """At the channel's close: drop the holder; whatever it still held goes back now."""
        self.stop()
        try:
            self._release_pending()
            with self.engine.begin() as connection:
                connection.execute(sa.delete(holders).where(holders.c.holder == self.holder))
            self.sweep()
        except Exception as e:  # noqa: BLE001 (closing goes on)
            logger.warning(
                "Could not end the lease of this worker's task messages (%s: %s): any it"
                " still held go back to the queue once their lease lapses (%.0f s).",
                type(e).__name__, e, self.timeout)


class SQLTransport(_KombuTransport):  # type: ignore[misc]
    """kombu's SQLAlchemy transport whose channels hold their messages under a lease."""

    Channel = SQLChannel

    def __init__(self, client: t.Any, **kwargs: t.Any) -> None:
        super().__init__(client, **kwargs)
        polling_interval = own_options(client).get("polling_interval")
        if polling_interval is not None:
            self.polling_interval = polling_interval


class LeasedConnection(_KombuConnection):  # type: ignore[misc]
    """A kombu connection that uses :class:`SQLTransport` wherever kombu would use its own.

    The options of flasker's transport move from ``transport_options`` to ``sql_options``:
    kombu's pools make connections of kombu's own class from this one's settings, using
    kombu's own SQL transport (which does for sending), and it would hand them to
    ``create_engine``.
    """

    transport_options: dict[str, t.Any]
    sql_options: dict[str, t.Any]

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_options = {}
        if super().get_transport_cls() is kombu_sql.Transport:
            options = self.transport_options
            sql_visibility_timeout(options)  # a bad one fails here, not in the worker's loop
            self.sql_options = {key: options[key] for key in _OWN_OPTIONS if key in options}
            self.transport_options = {key: value for key, value in options.items()
                                      if key not in _OWN_OPTIONS}

    def clone(self, **kwargs: t.Any) -> LeasedConnection:
        clone: LeasedConnection = super().clone(**kwargs)
        if "transport_options" not in kwargs:  # they left this one's: take them along
            clone.sql_options = {**self.sql_options, **clone.sql_options}
        return clone

    def get_transport_cls(self) -> type:
        cls: type = super().get_transport_cls()
        return SQLTransport if cls is kombu_sql.Transport else cls


class LeasedAMQP(AMQP):  # type: ignore[misc]
    """Celery's messaging glue with :class:`LeasedConnection`: ``Celery(amqp=...)``."""

    Connection = LeasedConnection
    BrokerConnection = LeasedConnection
