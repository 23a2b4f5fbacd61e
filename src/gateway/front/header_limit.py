"""A cap on the request header block, enforced by the HTTP parser before the app sees the request.

Neither of uvicorn's parsers refuses a large header block on its own: httptools buffers any size,
and h11's buffer limit only applies while headers are still arriving (a block that arrives whole
is accepted) and is answered 400. A client could make every request hold megabytes before
authentication. These protocol classes count the bytes of the request line and headers as they
arrive and, past `[server] max_header_bytes`, answer 431 and end the connection: nothing is
authenticated, routed or parsed further. A block that arrives within one read is measured exactly
once it is parsed; one that trickles in is refused as soon as its bytes pass the limit, so memory
stays bounded by the limit plus one read.

After the 431 the gateway stops sending and discards what the client still sends for a few
seconds before closing: closing at once, with the rest of the headers unread, makes the kernel
reset the connection, and the client would lose the 431 and see only a broken pipe.
"""

from __future__ import annotations

import asyncio  # uvicorn's HTTP protocols are asyncio protocols, and this refines them
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.errors import ConfigError

HttpParser = Literal["auto", "httptools", "h11"]

#: Seconds a refused connection is drained (its data discarded) before it is closed.
_LINGER_SECONDS = 5.0
#: Bytes a header line adds besides its name and value: ": " and CRLF.
_LINE_OVERHEAD = 4
#: " HTTP/1.1\r\n" after the request target, and the empty line that ends the block.
_REQUEST_LINE_OVERHEAD = 11 + 2


def header_block_size(method: bytes, target: bytes, headers: Any) -> int:
    """The size of a parsed request line and header block, as the client sent it (give or take whitespace)."""
    size = len(method) + 1 + len(target) + _REQUEST_LINE_OVERHEAD
    for name, value in headers:
        size += len(name) + len(value) + _LINE_OVERHEAD
    return size


def refusal(limit: int) -> bytes:
    """The whole 431 response: the client learns what was too large and by which setting."""
    body = (
        f"Request header fields too large: the request line and headers are over {limit} bytes, the gateway's "
        "[server] max_header_bytes. Send smaller headers (a shorter token, fewer or smaller cookies).\n"
    ).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def refuse(transport: asyncio.Transport, limit: int) -> None:
    """Answer 431, then drain the connection until the client closes it or the linger time ends."""
    if transport.is_closing():
        return
    transport.write(refusal(limit))
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    asyncio.get_running_loop().call_later(_LINGER_SECONDS, transport.close)


class _LimitedH11Connection(h11.Connection):
    """h11's connection, refusing a complete header block over the limit too, and saying when it refused one."""

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.header_block_too_large = False

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            # h11 hints 431 only when its buffer outgrew the limit while headers were arriving.
            self.header_block_too_large = exc.error_status_hint == 431
            raise
        if isinstance(event, h11.Request):
            if header_block_size(event.method, event.target, event.headers.raw_items()) > self.max_header_bytes:
                self.header_block_too_large = True
                raise h11.RemoteProtocolError("request header block too large", error_status_hint=431)
        return event


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header limit; `max_header_bytes` is set by `protocol_class`."""

    max_header_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _LimitedH11Connection(self.max_header_bytes)

    def data_received(self, data: bytes) -> None:
        if isinstance(self.conn, _LimitedH11Connection) and self.conn.header_block_too_large:
            return  # refused: drained until closed
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if isinstance(self.conn, _LimitedH11Connection) and self.conn.header_block_too_large:
            refuse(self.transport, self.max_header_bytes)
            return
        super().send_400_response(msg)


def _httptools_protocol() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, which has no header limit of its own, with one."""

        max_header_bytes = 64 * 1024

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # None: not reading a header block; otherwise the header bytes read so far.
            self._header_bytes: int | None = 0
            self._header_phase_began_mid_read = False
            self._too_large = False
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return  # refused: drained until closed
            counting = self._header_bytes is not None
            self._header_phase_began_mid_read = False
            super().data_received(data)
            if self._header_bytes is None or self._header_phase_began_mid_read or not counting:
                return
            # The headers were still arriving before this read and after it: all of it was header bytes.
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse()

        def on_headers_complete(self) -> None:
            self._header_bytes = None
            if header_block_size(self.parser.get_method(), self.url, self.headers) > self.max_header_bytes:
                self._too_large = True
                raise _HeaderBlockTooLarge  # the parser stops; `data_received` answers via send_400_response
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._header_bytes = 0
            self._header_phase_began_mid_read = True  # the rest of this read is the next request's, uncounted

        def send_400_response(self, msg: str) -> None:
            if self._too_large:
                self._refuse()
                return
            super().send_400_response(msg)

        def _refuse(self) -> None:
            self._too_large = True
            refuse(self.transport, self.max_header_bytes)

    return LimitedHttpToolsProtocol


class _HeaderBlockTooLarge(Exception):
    """Raised inside the httptools parser's callback to stop parsing a request it must refuse."""


def protocol_class(parser: HttpParser, max_header_bytes: int) -> type[asyncio.Protocol]:
    """The uvicorn `http` protocol for `parser` ("auto": httptools when installed, as uvicorn picks)."""
    base: type[asyncio.Protocol]
    if parser == "h11":
        base = LimitedH11Protocol
    else:
        try:
            base = _httptools_protocol()
        except ImportError:
            if parser == "httptools":
                raise ConfigError(
                    '[server] http_parser = "httptools" needs the httptools package: install it '
                    '(pip install httptools) or set http_parser = "auto"'
                ) from None
            base = LimitedH11Protocol
    return type(base.__name__, (base,), {"max_header_bytes": max_header_bytes})
