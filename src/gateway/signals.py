"""Signals: small messages one gateway process sends to all the others sharing its database.

With several workers or replicas, any process may serve any request, so what one of them learns
(a cancellation, a changed catalog, reloaded policies) must reach the others through something
they share rather than through process memory. That is the database: on PostgreSQL, signals
travel by LISTEN/NOTIFY on one dedicated connection per process; on SQLite (one process by
design) they stay in the process.

    async with signals.subscribe("cancel") as subscription:
        async for signal in subscription:
            if not signal.local:
                cancel(signal.payload["session"], signal.payload["request_id"])

    await signals.publish("cancel", {"session": session_id, "request_id": request_id})

The broker runs in the process's task group for as long as it serves (`tasks.start(signals.run)`).
Every subscriber receives every signal published on its channel after it subscribed, from any
process, including its own (`signal.local` tells them apart, so a handler that already ran
locally can skip its own). Delivery is at most once and best effort: a signal published while a
process is reconnecting to PostgreSQL is lost for that process, so signals are prompts to act
sooner, never the only way state converges (policies are also polled, listings re-fetched).
Payloads are JSON objects of at most `MAX_PAYLOAD_BYTES` encoded, PostgreSQL's NOTIFY limit less
room for the envelope; larger ones are refused on both implementations alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import asyncpg

from gateway.errors import SignalTooLarge, StorageUnavailable
from gateway.storage.database import async_database_url

logger = logging.getLogger(__name__)

#: Largest encoded signal (payload plus envelope); PostgreSQL refuses NOTIFY payloads of 8000 bytes.
MAX_PAYLOAD_BYTES = 7900

_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_PG_PREFIX = "gateway_"
_QUEUE_SIZE = 1000


class SignalsUnavailable(StorageUnavailable):
    """The signal could not be sent: the connection to PostgreSQL is down and did not come back in time."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One received message: its channel, the published payload, and the process that sent it."""

    channel: str
    payload: dict[str, Any]
    origin: str
    local: bool


class Subscription:
    """Signals on one channel, in arrival order; register with `async with`, read with `async for`.

    Each subscription has its own bounded buffer, so a slow reader loses the signals that arrive
    while its buffer is full (logged) and never holds up delivery to anyone else.
    """

    def __init__(self, broker: Signals, channel: str) -> None:
        self._broker = broker
        self.channel = channel
        self._incoming, self._received = anyio.create_memory_object_stream[Signal](_QUEUE_SIZE)

    async def __aenter__(self) -> Subscription:
        await self._broker._add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._broker._remove(self)
        self._incoming.close()
        self._received.close()

    def __aiter__(self) -> AsyncIterator[Signal]:
        return self

    async def __anext__(self) -> Signal:
        return await self._received.receive()

    async def get(self) -> Signal:
        """The next signal, waiting for it (use `anyio.fail_after` to bound the wait)."""
        return await self._received.receive()

    def _offer(self, signal: Signal) -> None:
        try:
            self._incoming.send_nowait(signal)
        except anyio.WouldBlock:
            logger.warning("signal dropped: subscriber is not keeping up", extra={"channel": self.channel})


class Signals(ABC):
    """Publish to and subscribe on named channels; see the module docstring for the guarantees."""

    def __init__(self) -> None:
        # Unique per process *instance*: containers all run as pid 1, and a restarted worker must
        # not take its predecessor's messages for its own.
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._subscriptions: dict[str, list[Subscription]] = {}

    @property
    def state(self) -> str:
        """For `/readyz`: `in-process`, or on PostgreSQL `listening` / `reconnecting`."""
        return "in-process"

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Carry signals to and from the other processes until cancelled; started once they can travel,
        or once waiting longer would only delay the gateway's start. Without other processes there
        is nothing to carry."""
        task_status.started()

    def subscribe(self, channel: str) -> Subscription:
        """A subscription to `channel`; it receives signals from the moment its `async with` is entered."""
        _check_channel(channel)
        return Subscription(self, channel)

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Send `payload` to every subscriber of `channel` in every process, this one included.

        Raises `SignalTooLarge` for an oversized payload, `TypeError` for one that is not JSON,
        and (PostgreSQL) `SignalsUnavailable` when the database cannot be reached in time; the
        local subscribers have been served in that last case.
        """
        _check_channel(channel)
        if not isinstance(payload, dict):
            raise TypeError("a signal payload is a JSON object (a dict)")
        envelope = json.dumps({"o": self.origin, "p": payload}, separators=(",", ":"), ensure_ascii=False)
        size = len(envelope.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise SignalTooLarge(
                f"signal on channel {channel!r} is {size} bytes encoded; at most {MAX_PAYLOAD_BYTES} fit in one "
                "PostgreSQL NOTIFY: send an identifier and let receivers read the rest from the database"
            )
        self._deliver(Signal(channel, json.loads(envelope)["p"], self.origin, local=True))
        await self._send(channel, envelope)

    @abstractmethod
    async def _send(self, channel: str, envelope: str) -> None:
        """Carry an encoded signal to the other processes (nothing to do when there are none)."""

    async def _add(self, subscription: Subscription) -> None:
        self._subscriptions.setdefault(subscription.channel, []).append(subscription)

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)

    def _deliver(self, signal: Signal) -> None:
        for subscription in list(self._subscriptions.get(signal.channel, ())):
            subscription._offer(signal)


class InProcessSignals(Signals):
    """For one process (SQLite): subscribers here are all there are, so `run` has nothing to do."""

    async def _send(self, channel: str, envelope: str) -> None:
        return None


class PostgresSignals(Signals):
    """LISTEN/NOTIFY over one dedicated asyncpg connection, re-established whenever it drops.

    The connection is separate from the SQLAlchemy pool because a listening connection must stay
    open and never be handed to a request. A drop is noticed at once when the socket closes
    (asyncpg's termination callback) and within `keepalive` seconds when it silently hangs.
    asyncpg runs only on asyncio, so this broker does too.
    """

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        keepalive: float = 10.0,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
        publish_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._publish_timeout = publish_timeout
        self._connection: Any = None
        #: Set while connected; a lost connection replaces it with a new, unset one.
        self._connected = anyio.Event()
        self._lock = anyio.Lock()
        self._listening: set[str] = set()
        self.connections = 0  # how many times a connection was established, for tests and logs

    @property
    def state(self) -> str:
        return "listening" if self._connected.is_set() else "reconnecting"

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL server process of the listening connection (None while disconnected)."""
        connection = self._connection
        return connection.get_server_pid() if connection is not None else None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the listening connection; started once it is up, or after `connect_timeout` without it."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._maintain, name="signals-listener")
            with anyio.move_on_after(self._connect_timeout):
                await self._connected.wait()
            task_status.started()

    async def _add(self, subscription: Subscription) -> None:
        await super()._add(subscription)
        async with self._lock:
            if self._connection is not None and subscription.channel not in self._listening:
                await self._listen(self._connection, subscription.channel)

    async def _listen(self, connection: Any, channel: str) -> None:
        await connection.add_listener(_PG_PREFIX + channel, self._on_notification)
        self._listening.add(channel)

    async def _send(self, channel: str, envelope: str) -> None:
        try:
            with anyio.fail_after(self._publish_timeout):
                while True:
                    await self._connected.wait()
                    async with self._lock:
                        connection = self._connection
                        if connection is None:
                            continue
                        try:
                            await connection.execute("SELECT pg_notify($1, $2)", _PG_PREFIX + channel, envelope)
                            return
                        except _CONNECTION_ERRORS as exc:
                            # The drop is the maintainer's to handle; wait for its next connection.
                            logger.info("signal not sent; waiting for the connection", extra={"error": repr(exc)})
                            self._lose(connection)
        except TimeoutError:
            raise SignalsUnavailable(
                f"signal on channel {channel!r} not sent: PostgreSQL did not answer within {self._publish_timeout} s"
            ) from None

    def _on_notification(self, connection: Any, pid: int, channel: str, data: str) -> None:
        # Called by asyncpg on its asyncio loop, outside any task: only non-blocking calls here.
        try:
            envelope = json.loads(data)
            origin, payload = envelope["o"], envelope["p"]
        except (ValueError, KeyError, TypeError):
            logger.warning("malformed signal ignored", extra={"channel": channel})
            return
        if origin == self.origin:
            return  # served locally when it was published
        self._deliver(Signal(channel.removeprefix(_PG_PREFIX), payload, origin, local=False))

    def _lose(self, connection: Any) -> None:
        if self._connection is connection:
            self._connection = None
            self._connected = anyio.Event()
        if not connection.is_closed():
            connection.terminate()

    async def _maintain(self) -> None:
        delay = self._initial_backoff
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except _CONNECTION_ERRORS as exc:
                logger.warning(
                    "signals: cannot connect to PostgreSQL; retrying",
                    extra={"error": repr(exc), "retry_in_seconds": delay},
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            lost = anyio.Event()
            # asyncpg calls its listeners on its asyncio loop, outside any task; setting an event is safe there.
            connection.add_termination_listener(lambda _connection, event=lost: event.set())
            try:
                async with self._lock:
                    self._listening = set()
                    for channel in list(self._subscriptions):
                        await self._listen(connection, channel)
                    self._connection = connection
                    self._connected.set()
                self.connections += 1
                delay = self._initial_backoff
                logger.info(
                    "signals: listening" if self.connections == 1 else "signals: reconnected and listening",
                    extra={"channels": sorted(self._listening)},
                )
                await self._watch(connection, lost)
                logger.warning("signals: connection to PostgreSQL lost; reconnecting")
            except _CONNECTION_ERRORS as exc:
                logger.warning("signals: connection failed; reconnecting", extra={"error": repr(exc)})
            finally:
                with anyio.CancelScope(shield=True):  # when stopping too, the connection is let go
                    async with self._lock:
                        self._lose(connection)

    async def _watch(self, connection: Any, lost: anyio.Event) -> None:
        """Return when the connection is gone: closed by the server, or silent past the keepalive."""
        while not lost.is_set():
            with anyio.move_on_after(self._keepalive):
                await lost.wait()
                return
            async with self._lock:
                if connection.is_closed():
                    return
                try:
                    await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
                except _CONNECTION_ERRORS:
                    return


#: What a lost or refused connection raises: socket errors, asyncpg's "connection is closed"
#: (InterfaceError) and server-side termination (PostgresError, e.g. admin_shutdown).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
)


def _check_channel(channel: str) -> None:
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(
            f"signal channel {channel!r}: use 1-48 lowercase letters, digits and '_', starting with a letter"
        )


def open_signals(storage_url: str) -> Signals:
    """The broker for a storage URL: LISTEN/NOTIFY on PostgreSQL, in-process on SQLite."""
    url = async_database_url(storage_url)
    if url.get_backend_name() != "postgresql":
        return InProcessSignals()
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:
        query["sslmode"] = query.pop("ssl")  # asyncpg's DSN speaks libpq's name
    dsn = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    return PostgresSignals(dsn)
