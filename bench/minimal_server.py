"""A stdio MCP backend with nothing but the standard library: `echo` and `big`.

For measurements that must not be dominated by the backends' own start-up: the official SDK
takes most of a second of CPU to import, so ten SDK backends on two cores take seconds to start
whatever the gateway does. This one speaks 2025-11-25 over newline-delimited JSON-RPC and starts
in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [
    {
        "name": "echo",
        "description": "Return the text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "big",
        "description": "Return a text of `size` bytes.",
        "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]},
        "annotations": {"readOnlyHint": True},
    },
]


def answer(request: dict[str, Any]) -> dict[str, Any]:
    method, params = request.get("method"), request.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "minimal", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        arguments = params.get("arguments") or {}
        text = "x" * int(arguments.get("size", 0)) if params.get("name") == "big" else str(arguments.get("text", ""))
        return {"content": [{"type": "text", "text": text}], "isError": False}
    raise LookupError(method)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if "id" not in request:
            continue  # notifications need no answer
        try:
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"], "result": answer(request)}
        except LookupError:
            reply = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "Method not found"}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
