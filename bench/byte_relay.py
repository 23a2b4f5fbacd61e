"""A relay that does nothing but copy bytes: the floor under any gateway built on our HTTP stack.

A raw ASGI app on uvicorn (uvloop and httptools, as `gateway serve` runs) forwards every request
to one streamable-HTTP backend over one pooled keep-alive aiohttp session, the client the
gateway's call hop uses, and copies the answer back: no parsing, no authentication, no policy.
With `--audit FILE` it first appends one row per POST to a SQLite file in WAL mode with
`synchronous = FULL` on a writer thread and waits for the commit, as the gateway's write-ahead
audit does, still without building or hashing anything. `floor.py` runs it.

    python bench/byte_relay.py --target http://127.0.0.1:8000/mcp --port 9000 [--audit /tmp/relay.db]
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sqlite3
import threading
import time
from typing import Any

import aiohttp
import uvicorn

# Hop-by-hop headers and the ones aiohttp or uvicorn set themselves.
_NOT_FORWARDED = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding"}
_NOT_RETURNED = {"content-length", "connection", "keep-alive", "transfer-encoding", "date", "server"}


class DurableAppend:
    """One row per request, committed and fsynced on a writer thread before the caller goes on."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], bytes]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._serve, name="relay-writer", daemon=True).start()

    async def append(self, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._requests.put((loop, future, body))
        await future

    def _serve(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, time REAL, body BLOB)")
        while True:
            waiting = [self._requests.get()]
            while True:
                try:
                    waiting.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO calls (time, body) VALUES (?, ?)", [(time.time(), body) for _, _, body in waiting]
            )
            connection.execute("COMMIT")
            for loop, future, _ in waiting:
                loop.call_soon_threadsafe(future.set_result, None)


class ByteRelay:
    """The ASGI app: every request to `target`, every answer back, bytes untouched."""

    def __init__(self, target: str, audit: DurableAppend | None) -> None:
        self._target = target
        self._audit = audit
        self._http: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
                    await send({"type": "lifespan.startup.complete"})
            if self._http is not None:
                await self._http.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self._http is not None
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if self._audit is not None and scope["method"] == "POST":
            await self._audit.append(body)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
        async with self._http.request(
            scope["method"], self._target, data=body or None, headers=headers, allow_redirects=False
        ) as response:
            returned = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.items()
                if k.lower() not in _NOT_RETURNED
            ]
            if response.content_length is not None:
                payload = await response.read()
                returned.append((b"content-length", str(len(payload)).encode()))
                await send({"type": "http.response.start", "status": response.status, "headers": returned})
                await send({"type": "http.response.body", "body": payload})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": returned})
            async for chunk in response.content.iter_any():  # SSE: each event as it arrives
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="the backend's streamable-HTTP URL")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit", help="SQLite file for one durable row per POST, before it is forwarded")
    args = parser.parse_args()
    audit = DurableAppend(args.audit) if args.audit else None
    uvicorn.run(ByteRelay(args.target, audit), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
