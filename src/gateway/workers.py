"""`gateway serve --workers N`: N processes serving one port, and the supervisor that keeps them.

Python serves one request at a time per process, so a busy gateway needs processes, not threads.
Each worker binds the same host:port with SO_REUSEPORT and the kernel spreads connections over
them; any worker may serve any request of any client, because everything a request needs is in
the shared PostgreSQL database (keys, audit chains, stored listings) or travels between workers
as a signal over LISTEN/NOTIFY (cancellations, change notices). Nothing is sticky.

The supervisor (the process the operator started) migrates the schema once, holds the port so
no other program takes it between worker restarts, starts the workers, restarts one that dies
(with backoff), forwards SIGTERM/SIGINT, and gives up with exit status 1 when a worker keeps
crashing right after start, since that is a broken configuration, not bad luck.

Each worker writes its own audit chain, `<replica_id>-w<index>`. With a configured replica id
that is the same for a restarted worker, which takes over its dead predecessor's lease at once
(the supervisor tells it the pid) and closes the calls it left open; with none, every worker
process gets an id of its own and a live process closes a dead one's chain once its lease
expires (`gateway.audit.leases`). Every worker runs its own connections to the backends, so
stdio backends run once per worker.

SQLite is refused with more than one worker: in-process signals would not reach the other
workers, so a cancellation sent to one could never stop a call running on another.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import Process

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.storage.database import async_database_url

logger = logging.getLogger("gateway.workers")

WORKER_HEADER = b"x-gateway-worker"
_MAX_REPLICA_ID = 64
_PR_SET_PDEATHSIG = 1
#: Environment variable naming the supervisor's pid, so a worker can tell it was orphaned at birth
#: (comparing with pid 1 would not do: in a container the supervisor often is pid 1).
_SUPERVISOR_PID = "GATEWAY_SUPERVISOR_PID"
#: Environment variable carrying the session key the supervisor made for its workers.
_SHARED_SESSION_KEY = "GATEWAY_WORKERS_SESSION_KEY"
#: Environment variable naming the pid of the dead worker a restarted one replaces, whose audit
#: lease it may take without waiting for it to expire: the supervisor saw that process exit.
_PREDECESSOR_PID = "GATEWAY_WORKER_PREDECESSOR_PID"


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor treats a dead worker.

    A worker that ran at least `stable_after` seconds died of something transient and is restarted
    after `initial_backoff`; each quick death in a row doubles the wait up to `max_backoff`, and
    `max_quick_deaths` in a row stop the gateway.
    """

    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    stable_after: float = 30.0
    max_quick_deaths: int = 5
    stop_timeout: float = 15.0


def check_workers_supported(config: Config, workers: int) -> None:
    """Refuse several workers on SQLite, naming the fix, before anything starts."""
    if workers > 1 and async_database_url(config.gateway.storage.url).get_backend_name() != "postgresql":
        raise ConfigError(
            f'--workers {workers} needs PostgreSQL storage ([storage] url = "postgresql://user@host/db"): '
            "workers share sessions, cancellations and change notices through PostgreSQL LISTEN/NOTIFY, "
            "which a SQLite file cannot carry between processes; run one worker on SQLite"
        )


def worker_replica_id(base: str, index: int) -> str:
    """`<base>-w<index>`, shortened from the base so it stays a valid replica id (at most 64 characters)."""
    suffix = f"-w{index}"
    return base[: _MAX_REPLICA_ID - len(suffix)] + suffix


def for_worker(config: Config, index: int) -> Config:
    """The worker's own config: its own audit replica id, and the supervisor's session key if none is set.

    Without configured `session_keys` every process would seal session ids with a random key of
    its own, and a 2025-11-25 session opened on one worker would be refused by the others.
    """
    from pydantic import SecretStr

    from gateway.audit import default_replica_id

    audit = config.gateway.audit
    replica_id = worker_replica_id(audit.replica_id or default_replica_id(), index)
    update: dict[str, Any] = {"audit": audit.model_copy(update={"replica_id": replica_id})}
    shared_key = os.environ.pop(_SHARED_SESSION_KEY, None)  # never inherited by backends this worker starts
    if not config.gateway.server.session_keys and shared_key:
        update["server"] = config.gateway.server.model_copy(update={"session_keys": (SecretStr(shared_key),)})
    return config.model_copy(update={"gateway": config.gateway.model_copy(update=update)})


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket on host:port that other workers may bind too (SO_REUSEPORT), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    return sock


# -- the worker ------------------------------------------------------------------------------


class _WorkerHeader:
    """ASGI wrapper naming the worker in every HTTP response, so operators (and tests) see the spread."""

    def __init__(self, app: Any, index: int) -> None:
        self._app = app
        self._header = (WORKER_HEADER, str(index).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self._header]}
            await send(message)

        await self._app(scope, receive, send_with_header)


class _WorkerField(logging.Filter):
    """Names the worker in each of its log lines, since all workers share the supervisor's stderr."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self._index
        return True


def run_worker(config: Config, *, host: str, port: int, index: int) -> int:
    """Serve as worker `index` until SIGTERM; returns the process exit status."""
    import uvicorn

    from gateway.app import create_app
    from gateway.front.header_limit import protocol_class

    _die_with_supervisor()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(index))
    predecessor = os.environ.pop(_PREDECESSOR_PID, None)  # never inherited by backends this worker starts
    app = create_app(
        for_worker(config, index),
        migrations_done=True,  # the supervisor migrated before starting anyone
        predecessor_pid=int(predecessor) if predecessor else None,
    )
    sock = bind_shared(host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            _WorkerHeader(app, index),
            http=protocol_class(config.gateway.server.http_parser, config.gateway.server.max_header_bytes),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
            lifespan="on",
        )
    )
    server.run(sockets=[sock])
    return 0 if server.started else 3


def _die_with_supervisor() -> None:
    """Ask Linux to SIGTERM this worker when its supervisor dies, even by SIGKILL: no orphans on the port."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    supervisor = os.environ.get(_SUPERVISOR_PID)
    if supervisor and os.getppid() != int(supervisor):  # it died before the request above took effect
        raise SystemExit(1)


# -- the supervisor --------------------------------------------------------------------------


class Supervisor:
    """Starts `count` workers with `command(index)` and keeps them running; see the module docstring."""

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        policy: RestartPolicy | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._count = count
        self._command = command
        self._policy = policy or RestartPolicy()
        self._env = {**os.environ, **(env or {}), _SUPERVISOR_PID: str(os.getpid())}
        self._processes: dict[int, Process] = {}
        self._stopping = anyio.Event()
        self._gave_up = False

    async def run(self) -> int:
        """Until every worker stopped: on SIGTERM/SIGINT, or when one keeps dying (exit status 1)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async with anyio.create_task_group() as listening:
                listening.start_soon(self._stop_on_signals, received)
                async with anyio.create_task_group() as group:
                    for index in range(self._count):
                        group.start_soon(self._keep, index)
                    group.start_soon(self._stop_all_when_asked)
                listening.cancel_scope.cancel()
        logger.info("all workers stopped", extra={"gave_up": self._gave_up})
        return 1 if self._gave_up else 0

    async def _stop_on_signals(self, received: AsyncIterator[signal.Signals]) -> None:
        """Every signal is taken while the workers stop, so a second SIGINT cannot orphan them."""
        async for signum in received:
            logger.info("stopping workers", extra={"signal": signum.name})
            self._stopping.set()

    async def _keep(self, index: int) -> None:
        quick_deaths = 0
        env = self._env
        while not self._stopping.is_set():
            started = time.monotonic()
            # The workers write to the supervisor's own stdout and stderr.
            process = await anyio.open_process(self._command(index), env=env, stdin=None, stdout=None, stderr=None)
            self._processes[index] = process
            logger.info("worker started", extra={"worker": index, "pid": process.pid})
            status = await process.wait()
            if self._stopping.is_set():
                return
            env = {**self._env, _PREDECESSOR_PID: str(process.pid)}
            ran = time.monotonic() - started
            quick_deaths = 0 if ran >= self._policy.stable_after else quick_deaths + 1
            if quick_deaths >= self._policy.max_quick_deaths:
                logger.error(
                    "worker keeps exiting right after start; stopping the gateway",
                    extra={"worker": index, "pid": process.pid, "exit_status": status, "deaths": quick_deaths},
                )
                self._gave_up = True
                self._stopping.set()
                return
            delay = min(self._policy.initial_backoff * 2 ** max(quick_deaths - 1, 0), self._policy.max_backoff)
            logger.warning(
                "worker exited; restarting",
                extra={"worker": index, "pid": process.pid, "exit_status": status, "restart_in_seconds": delay},
            )
            with anyio.move_on_after(delay):
                await self._stopping.wait()

    async def _stop_all_when_asked(self) -> None:
        await self._stopping.wait()
        living = [p for p in self._processes.values() if p.returncode is None]
        for process in living:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(self._policy.stop_timeout) as waiting:
            await _wait_for_all(living)
        if not waiting.cancelled_caught:
            return
        for process in living:
            if process.returncode is None:
                logger.error("worker did not stop in time; killing it", extra={"pid": process.pid})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await _wait_for_all(living)


async def _wait_for_all(processes: Sequence[Process]) -> None:
    async with anyio.create_task_group() as group:
        for process in processes:
            group.start_soon(process.wait)


def supervise(config: Config, *, host: str, port: int, workers: int, worker_arguments: Sequence[str]) -> int:
    """Run `workers` copies of `gateway serve <worker_arguments> --worker-index i` on host:port."""
    from gateway.storage.database import migrate_database

    check_workers_supported(config, workers)
    anyio.run(migrate_database, config.gateway.storage.url)
    reserved = bind_shared(host, port)  # fails fast on a taken port, and resolves port 0 for every worker
    port = reserved.getsockname()[1]
    logger.info("starting workers", extra={"workers": workers, "host": host, "port": port})

    def command(index: int) -> list[str]:
        return [
            sys.executable, "-m", "gateway", "serve", *worker_arguments,
            "--host", host, "--port", str(port), "--worker-index", str(index),
        ]  # fmt: skip

    try:
        # A key for sealing session ids, the same in every worker, when the config names none.
        env = {_SHARED_SESSION_KEY: secrets.token_urlsafe(32)}
        return anyio.run(Supervisor(workers, command, env=env).run)
    finally:
        reserved.close()
