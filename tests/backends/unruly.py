"""A stdio backend that breaks the wire on purpose, written against raw JSON-RPC (no SDK).

Speaks 2025-11-25 only (it answers `server/discover` with method-not-found). Its tools:
`echo` answers normally; `noisy` writes lines that are not JSON-RPC before its answer; `stray`
writes answers to ids nobody asked about before its own; `cut` writes half its answer and exits;
`flood` replaces the listing with `tools` generated tools (one of them with a description of
`description_bytes` bytes when that is given) and announces it with `list_changed`, as a backend
whose offer explodes does.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

TOOLS = [
    {"name": "echo", "description": "Return the text.", "inputSchema": {"type": "object"}},
    {"name": "noisy", "description": "Garbage lines, then the answer.", "inputSchema": {"type": "object"}},
    {"name": "stray", "description": "Answers to unknown ids, then the answer.", "inputSchema": {"type": "object"}},
    {"name": "cut", "description": "Half an answer, then exit.", "inputSchema": {"type": "object"}},
    {"name": "flood", "description": "Offer many tools from now on.", "inputSchema": {"type": "object"}},
]
listing: list[dict[str, Any]] = TOOLS


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def send(message: dict[str, Any]) -> None:
    write(json.dumps(message) + "\n")


def text_result(request_id: Any, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}}


def call(request_id: Any, name: str, arguments: dict[str, Any]) -> None:
    answer = text_result(request_id, f"{name} answered: {arguments.get('text', '')}")
    if name == "noisy":
        write('this is not json\n[1, 2, 3]\n{"half": \n\n"a string"\n{"jsonrpc": "2.0", "id": {"odd": 1}}\n')
    elif name == "stray":
        send(text_result(987654321, "an answer to a call nobody made"))
        send({"jsonrpc": "2.0", "id": "nobody", "error": {"code": -32000, "message": "not yours either"}})
    elif name == "cut":
        line = json.dumps(answer)
        write(line[: len(line) // 2])
        os._exit(3)
    elif name == "flood":
        flood(int(arguments.get("tools", 0)), int(arguments.get("description_bytes", 0)))
    send(answer)


def flood(count: int, description_bytes: int) -> None:
    """From now on list `count` more tools (the first with a huge description if asked), and say so."""
    global listing
    generated = [
        {
            "name": f"bulk_{index:05d}",
            "description": f"Generated tool number {index}.",
            "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        }
        for index in range(count)
    ]
    if description_bytes and generated:
        generated[0]["description"] = "x" * description_bytes
    listing = [*TOOLS, *generated]
    send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})


def main() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        request_id = message.get("id")
        method = message.get("method")
        if request_id is None or method is None:
            continue  # notifications, and answers to requests this backend never makes
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "unruly", "version": "1.0"},
            }
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": listing}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/call":
            params = message.get("params") or {}
            call(request_id, params.get("name", ""), params.get("arguments") or {})
        else:
            error = {"code": -32601, "message": f"method not found: {method}"}
            send({"jsonrpc": "2.0", "id": request_id, "error": error})


if __name__ == "__main__":
    main()
