"""A test backend whose record updates detect overlap: two running at once on one record is caught.

Every process of it (each gateway starts its own over stdio) shares the directory `RECORDS_DIR`,
so overlap is seen across gateways and replicas. An update claims `<record>.running` with an
exclusive create; finding it already there (held by a live process) is an overlap, appended to
`overlaps.log` and answered as a tool error. Each run writes `<record>.<call>.started` when it
begins, then waits until the file `release` (or the one it names) exists, so a test decides when
it ends, and appends its start and end to `runs.log`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent

server = MCPServer("records", instructions="Test backend: record updates that detect overlap.")
_DIR = Path(os.environ.get("RECORDS_DIR", "."))
_WAIT_LIMIT = 120.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(record: str) -> bool:
    """Take the record's running marker; False when a live run holds it (an overlap)."""
    marker = _DIR / f"{record}.running"
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(marker.read_text() or "0")
            except (OSError, ValueError):
                return False
            if holder and not _alive(holder):  # left by a killed run: not an overlap
                marker.unlink(missing_ok=True)
                continue
            return False
        with os.fdopen(fd, "w") as file:
            file.write(str(os.getpid()))
        return True
    return False


def _log(name: str, line: str) -> None:
    with (_DIR / name).open("a") as file:
        file.write(line + "\n")


async def _run(record: str, call: str, release: str) -> CallToolResult:
    if not _claim(record):
        _log("overlaps.log", f"{record} {call}")
        return CallToolResult(content=[TextContent(type="text", text=f"overlap on {record}")], is_error=True)
    try:
        _log("runs.log", f"start {record} {call} {time.time()}")
        (_DIR / f"{record}.{call}.started").write_text(str(os.getpid()))
        deadline = time.monotonic() + _WAIT_LIMIT
        # The release is a file another process (the test) creates: nothing here could ring an event for it.
        while not (_DIR / release).exists() and time.monotonic() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        _log("runs.log", f"end {record} {call} {time.time()}")
        return CallToolResult(content=[TextContent(type="text", text=f"updated {record} ({call})")])
    finally:
        (_DIR / f"{record}.running").unlink(missing_ok=True)


@server.tool()
async def update_record(record_id: str, call: str, release: str = "release") -> CallToolResult:
    """Update a record; runs until the file `release` exists in RECORDS_DIR."""
    return await _run(record_id, call, release)


@server.tool()
async def rename_record(record_id: str, call: str, release: str = "release") -> CallToolResult:
    """Rename a record: the same record as `update_record`'s, locked with it."""
    return await _run(record_id, call, release)


@server.tool()
async def move_order(order: dict[str, str], call: str, release: str = "release") -> CallToolResult:
    """Move an order, named by a nested argument (`order.id`)."""
    return await _run(order.get("id", "none"), call, release)


@server.tool()
async def touch_record(record_id: str, call: str, release: str = "release") -> CallToolResult:
    """Like `update_record`, with no lock configured in the tests: shows the overlap detection works."""
    return await _run(record_id, call, release)


if __name__ == "__main__":
    server.run("stdio")
