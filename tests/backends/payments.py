"""A payments backend that counts what it executes, for the de-duplication tests.

Every execution appends a line `<tool> <key>` to `$PAYMENTS_MARKERS/executions.log`, so a test
knows how many times each call reached the backend. `gate` makes a payment wait: it writes
`<gate>.started`, then waits for the test to create `<gate>.open`.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations

server = MCPServer("payments", instructions="Test payments backend.")
_MARKERS = Path(os.environ.get("PAYMENTS_MARKERS", "."))


def _executed(tool: str, key: str) -> int:
    """Log one execution; how many executions of this tool and key there have been."""
    log = _MARKERS / "executions.log"
    with log.open("a") as file:
        file.write(f"{tool} {key}\n")
    return log.read_text().splitlines().count(f"{tool} {key}")


@server.tool()
async def pay_invoice(invoice_id: str, amount: float, gate: str = "") -> dict[str, object]:
    """Pay an invoice (once, one hopes)."""
    if gate:
        (_MARKERS / f"{gate}.started").write_text("started")
        opened = _MARKERS / f"{gate}.open"
        with anyio.fail_after(600):  # polls a file the test writes from another process: no event can cross
            while not opened.exists():  # noqa: ASYNC110
                await anyio.sleep(0.01)
    count = _executed("pay_invoice", invoice_id)
    return {"paid": invoice_id, "amount": amount, "execution": count}


@server.tool()
def transfer(to: str, amount: float) -> dict[str, object]:
    """Move money; de-duplicated by all its arguments."""
    return {"to": to, "amount": amount, "execution": _executed("transfer", f"{to}:{amount}")}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def invoice_status(invoice_id: str) -> dict[str, object]:
    """Read an invoice: read-only, so never de-duplicated by the connector-wide key."""
    return {"invoice": invoice_id, "execution": _executed("invoice_status", invoice_id)}


@server.tool()
def decline(invoice_id: str) -> CallToolResult:
    """A payment the bank refuses: a tool error."""
    count = _executed("decline", invoice_id)
    return CallToolResult(content=[TextContent(type="text", text=f"declined ({count})")], is_error=True)


if __name__ == "__main__":
    server.run()
