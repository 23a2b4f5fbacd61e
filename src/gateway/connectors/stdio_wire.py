"""The wire for `kind = "mcp-stdio"`: the gateway starts the backend as its own subprocess.

A fresh subprocess per connection attempt; secrets from `env` reach only the child's environment.
The gateway owns the subprocess and its newline-delimited JSON-RPC stream. One reader task
parses every line once and routes it: responses to our own calls wake their waiter by id,
their progress notifications go to the caller's callback, and everything else (handshake and
listing answers, pings, change notifications, server requests) is handed to the SDK session as
it would have come from the SDK's own stdio transport. Calls are written straight to stdin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.client import ClientSession
from mcp.client.stdio import get_default_environment
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from gateway.connectors.base import JsonObject, ProgressCallback
from gateway.connectors.jsonrpc import FIRST_ID, decode, encode, outcome, progress_args
from gateway.connectors.negotiated_revision import NegotiatedRevision
from gateway.connectors.wire import WireLost, WireTimeout
from gateway.errors import BackendStartFailed
from gateway.mcp_sdk import TransportStreams, close_subprocess_transport
from gateway.settings.connectors import McpStdioConnector

logger = logging.getLogger(__name__)

#: How long a backend gets to exit by itself once its stdin closes, then to die after SIGTERM.
_EXIT_GRACE_SECONDS = 2.0
#: Upper bound on writing a cancellation notice: a wedged pipe must not wedge the caller.
_CANCEL_WRITE_SECONDS = 1.0
_READ_CHUNK = 1 << 20
_SESSION_BUFFER = 64


@dataclass(slots=True)
class _Waiter:
    """Where the reader leaves the answer to one of our calls, or why none will come."""

    answered: anyio.Event = field(default_factory=anyio.Event)
    message: JsonObject | None = None
    lost: str | None = None


class StdioWire:
    """One backend subprocess: `open()` for the SDK client, `request()` for calls once it negotiated.

    Stdio backends of every revision take `notifications/cancelled` for an abandoned call.
    """

    def __init__(self, settings: McpStdioConnector, on_lost: Callable[[str], None]) -> None:
        self._settings = settings
        self._on_lost = on_lost
        self._process: anyio.abc.Process | None = None
        self._to_session: MemoryObjectSendStream[SessionMessage | Exception] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._revision: NegotiatedRevision | None = None
        self._pending: dict[int, _Waiter] = {}
        self._progress: dict[int, ProgressCallback] = {}
        self._ids = itertools.count(FIRST_ID)
        self._gone: str | None = None

    @property
    def name(self) -> str:
        return self._settings.name

    # -- the SDK's side ----------------------------------------------------------------------

    @asynccontextmanager
    async def open(self) -> AsyncIterator[TransportStreams]:
        settings = self._settings
        env = get_default_environment() | {key: value.get_secret_value() for key, value in settings.env.items()}
        try:
            process = await anyio.open_process(
                list(settings.command), env=env, stderr=sys.stderr, cwd=settings.cwd, start_new_session=True
            )
        except OSError as exc:
            raise BackendStartFailed(_start_failure(settings, exc)) from None
        self._process = process
        to_session, session_reads = anyio.create_memory_object_stream[SessionMessage | Exception](_SESSION_BUFFER)
        session_writes, from_session = anyio.create_memory_object_stream[SessionMessage](_SESSION_BUFFER)
        self._to_session = to_session
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_group.start_soon(self._read_stdout, process)
                task_group.start_soon(self._write_session_messages, process, from_session)
                try:
                    yield session_reads, session_writes
                finally:
                    with anyio.CancelScope(shield=True):
                        self._end("the gateway closed the connection", report=False)
                        await _stop(process)
                    task_group.cancel_scope.cancel()
        finally:
            for stream in (to_session, session_reads, session_writes, from_session):
                stream.close()

    async def _write_session_messages(
        self, process: anyio.abc.Process, from_session: anyio.abc.ObjectReceiveStream[SessionMessage]
    ) -> None:
        assert process.stdin is not None
        try:
            async for item in from_session:
                line = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await process.stdin.send(line.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._end(f"writing to the backend failed: {exc.__class__.__name__}")

    async def _read_stdout(self, process: anyio.abc.Process) -> None:
        """Split stdout into lines without rescanning a long line, and route each one."""
        assert process.stdout is not None
        partial = bytearray()
        try:
            while True:
                chunk = await process.stdout.receive(_READ_CHUNK)
                start = 0
                while (end := chunk.find(b"\n", start)) != -1:
                    if partial:
                        partial += memoryview(chunk)[start:end]
                        line: bytes | bytearray | memoryview = partial
                        partial = bytearray()
                    elif start == 0 and end == len(chunk) - 1:
                        line = chunk  # the usual case: one whole message per read
                    else:
                        line = memoryview(chunk)[start:end]
                    await self._route(line)
                    del line
                    start = end + 1
                if start < len(chunk):
                    partial += memoryview(chunk)[start:] if start else chunk
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            self._end("backend closed the stream" if not partial else "backend closed the stream mid-message")

    async def _route(self, line: bytes | bytearray | memoryview) -> None:
        if len(line) < 8 and not bytes(line).strip():
            return  # blank lines between messages are harmless
        head = bytes(line[:200])
        try:
            message = decode(line)  # empties a large `line` in place: the parsed message is all that stays
        except ValueError:
            logger.warning(
                "backend wrote a line that is not JSON; ignored",
                extra={"connector": self.name, "line": head.decode(errors="replace")},
            )
            return
        if not isinstance(message, dict):
            logger.warning("backend wrote JSON that is not a message; ignored", extra={"connector": self.name})
            return
        if "method" not in message:
            request_id = _our_id(message.get("id"))
            waiter = self._pending.pop(request_id, None) if request_id is not None else None
            if waiter is not None:
                if not waiter.answered.is_set():
                    waiter.message = message
                    waiter.answered.set()
                return
        elif message["method"] == "notifications/progress" and (args := progress_args(message.get("params"))):
            token, progress, total, text = args
            request_id = _our_id(token)
            callback = self._progress.get(request_id) if request_id is not None else None
            if callback is not None and self._task_group is not None:
                self._task_group.start_soon(_relay_progress, callback, progress, total, text, self._settings.name)
                return
        await self._to_sdk(message)

    async def _to_sdk(self, message: JsonObject) -> None:
        """Everything that is not one of our calls' traffic goes to the SDK session, validated as it expects."""
        try:
            parsed = types.jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValidationError:
            logger.warning(
                "backend wrote a message that is not JSON-RPC; ignored", extra={"connector": self._settings.name}
            )
            return
        if self._to_session is None:
            return
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._to_session.send(SessionMessage(parsed))

    def _end(self, why: str, *, report: bool = True) -> None:
        """The connection is over: fail every waiting call and let the SDK session see the end."""
        if self._gone is not None:
            return
        self._gone = why
        for waiter in self._pending.values():
            if not waiter.answered.is_set():
                waiter.lost = why
                waiter.answered.set()
        self._pending.clear()
        if self._to_session is not None:
            self._to_session.close()
        if report:
            self._on_lost(why)

    # -- calls -------------------------------------------------------------------------------

    def adopt(self, session: ClientSession) -> None:
        self._revision = NegotiatedRevision(session)

    async def request(
        self, method: str, params: JsonObject, *, time_limit: float, on_progress: ProgressCallback | None
    ) -> JsonObject:
        revision = self._revision
        if revision is None:
            raise WireLost("not connected")
        request_id = next(self._ids)
        message, _headers = revision.request(request_id, method, params, progress=on_progress is not None)
        waiter = self._pending[request_id] = _Waiter()
        if on_progress is not None:
            self._progress[request_id] = on_progress
        try:
            async with asyncio.timeout(time_limit):  # asyncio's: as in `http_wire`, half anyio's cost
                await self._send(encode(message) + b"\n")
                await waiter.answered.wait()
        except TimeoutError:
            await self._notify_cancelled(request_id, f"timed out after {time_limit:g}s")
            raise WireTimeout from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._notify_cancelled(request_id, "caller cancelled")
            raise
        finally:
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)
        if waiter.message is None:
            raise WireLost(waiter.lost or "the connection ended")
        return revision.result(method, outcome(waiter.message))

    async def _send(self, data: bytes) -> None:
        process = self._process
        if self._gone is not None or process is None or process.stdin is None:
            raise WireLost(self._gone or "not connected")
        try:
            await process.stdin.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._end(f"writing to the backend failed: {exc.__class__.__name__}")
            raise WireLost(self._gone or "write failed") from None

    async def _notify_cancelled(self, request_id: int, reason: str) -> None:
        notice = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        with anyio.move_on_after(_CANCEL_WRITE_SECONDS), suppress(WireLost):
            await self._send(encode(notice) + b"\n")


def _start_failure(settings: McpStdioConnector, exc: OSError) -> str:
    """Which program failed to start, why, and where it is configured: the reader edits that file.

    Only the program is named, not its arguments: those may carry `${VAR}` secrets.
    """
    program = settings.command[0]
    where = settings.location("command")
    if isinstance(exc, FileNotFoundError) and settings.cwd is not None and not settings.cwd.is_dir():
        return (
            f"cannot start program {program!r}: its working directory {settings.cwd} does not exist; "
            f"fix `cwd` in {settings.source} (the command is at {where})"
        )
    if isinstance(exc, FileNotFoundError):
        reason = "it was not found" + ("" if "/" in program else " on the PATH")
    elif isinstance(exc, PermissionError):
        reason = "it is not executable or not accessible"
    else:
        reason = exc.strerror or str(exc)
    return f"cannot start program {program!r}: {reason}; fix `command` at {where} or install the program"


def _our_id(value: Any) -> int | None:
    """Our ids are ints; a backend that echoes them as strings still gets its answer matched."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


async def _relay_progress(
    callback: ProgressCallback, progress: float, total: float | None, message: str | None, connector: str
) -> None:
    try:
        await callback(progress, total, message)
    except Exception:  # boundary: a caller's progress sink failing must not take the connection down
        logger.warning("progress relay failed", extra={"connector": connector}, exc_info=True)


async def _stop(process: anyio.abc.Process) -> None:
    """Close stdin and give the backend its grace period, then end its whole process group."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(_EXIT_GRACE_SECONDS):
        # Not process.wait(): on 3.11 it also waits for pipe EOF, which a grandchild holding the pipe delays.
        while process.returncode is None:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    if process.returncode is None:
        with suppress(ProcessLookupError, OSError):
            await terminate_posix_process_tree(process, _EXIT_GRACE_SECONDS)
    if process.stdout is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdout.aclose()
    close_subprocess_transport(process)
