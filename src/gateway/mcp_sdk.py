"""The one place the gateway relies on the `mcp` SDK beyond its public API.

Forwarded calls go out on the SDK client's own connection but around its session (see
`gateway.connectors.wire`), so they must be shaped exactly as the session would shape them, and
a stdio backend's process must be let go as the SDK's own stdio client does. The SDK has no
public API for either, so the gateway borrows a few of its internals. Each is named here and
nowhere else, checked when this module is imported, and held to its behaviour by
`tests/test_mcp_sdk_contract.py`: on an SDK that renamed or changed one, the gateway refuses to
start and says what is missing, rather than failing every call and reconnecting forever.

The front's error mapping is here too: it mirrors the SDK server's answer to a request whose
parameters fail validation, through the public `handler_exception_to_error_data`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.client import ClientSession
from mcp.shared.dispatcher import CallOptions
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import SessionMessage

from gateway.errors import SdkMismatch

__all__ = [
    "SDK_VERSION",
    "Stamp",
    "TransportStreams",
    "close_subprocess_transport",
    "later_revision_fields",
    "modern_error_data",
    "request_stamp",
]

logger = logging.getLogger(__name__)

SDK_VERSION = importlib.metadata.version("mcp")

_problems: list[str] = []


def _borrow(module: str, name: str, *arguments: str) -> Any:
    """The SDK's `module.name`; when it is gone, or no longer takes `arguments`, the problem is noted."""
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        _problems.append(f"{module}.{name} is gone")
        return None
    if arguments:
        try:
            inspect.signature(value).bind(*arguments)
        except TypeError:
            _problems.append(f"{module}.{name} no longer takes ({', '.join(arguments)})")
    return value


if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams
else:
    TransportStreams = _borrow("mcp.client._transport", "TransportStreams")
    """The (read, write) stream pair an SDK client runs on; only the private module names the type."""

later_revision_fields: Callable[[str, str], frozenset[str]] = _borrow(
    "mcp.client.session", "_later_revision_fields", "method", "version"
)
"""Result keys of `method` that only revisions later than `version` define; the SDK session drops them."""

close_subprocess_transport: Callable[[anyio.abc.Process], None] = _borrow(
    "mcp.client.stdio", "_close_subprocess_transport", "process"
)
"""Close a stopped backend process's asyncio transport, as the SDK's stdio client does (a no-op elsewhere).

Nothing public reaches that transport; left open, it warns at exit while a grandchild holds a pipe.
"""

Stamp = Callable[[dict[str, Any], CallOptions], None]
"""Adds to one request (`{"method", "params"}`, and its call options) what the negotiated revision wants."""


def request_stamp(session: ClientSession) -> Stamp:
    """The stamp `session` puts on every request it sends, for the revision it negotiated.

    2026-07-28 requests carry the protocol version, client info and capabilities in `_meta` and
    `Mcp-Method`/`Mcp-Name` (plus any `Mcp-Param-*`) headers; 2025-11-25 ones carry the
    `Mcp-Protocol-Version` header. Taken from the session itself, so the gateway's calls and the
    SDK's own requests cannot drift apart. Read it once the session has negotiated.
    """
    return session._stamp


def _sessions_have_a_stamp() -> bool:
    """Whether a client session still keeps its per-request stamp where `request_stamp` reads it."""
    to_session, session_reads = anyio.create_memory_object_stream[SessionMessage | Exception](1)
    session_writes, from_session = anyio.create_memory_object_stream[SessionMessage](1)
    with to_session, session_reads, session_writes, from_session:
        return callable(getattr(ClientSession(session_reads, session_writes), "_stamp", None))


if not _sessions_have_a_stamp():
    _problems.append("mcp.client.session.ClientSession._stamp is gone")


def modern_error_data(exc: Exception) -> types.ErrorData:
    """The wire error the SDK server answers a 2026-07-28 request with when its handler raised `exc`.

    An `MCPError` carries its own; invalid parameters (a pydantic `ValidationError`) are
    INVALID_PARAMS with nothing of pydantic's text; anything else is an internal error, logged here.
    """
    error = handler_exception_to_error_data(exc)
    if error is not None:
        return error
    logger.exception("modern request handler raised")
    return types.ErrorData(code=types.INTERNAL_ERROR, message="Internal server error")


if _problems:
    raise SdkMismatch(
        f"the installed mcp {SDK_VERSION} does not offer what this gateway relies on: {'; '.join(_problems)}. "
        "Install the mcp version the gateway is pinned to (see its dependencies in pyproject.toml)."
    )
