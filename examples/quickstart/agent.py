"""A scripted agent: it does what an LLM agent would do through the gateway, minus the LLM.

It connects to the gateway with an API key, lists the tools that key can see, then works through
a small account-review task that touches both demo backends: find a customer, read the record,
update it, list overdue invoices and try to pay one. Every call is printed with its outcome, and a
refused or failed call is reported and skipped past, because seeing the gateway say no is half
the point of the demo.

    GATEWAY_KEY=... python agent.py
    python agent.py --key ... --url http://127.0.0.1:8787/mcp --mode legacy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent, Tool

DEFAULT_URL = "http://127.0.0.1:8787/mcp"
# Used when the invoice listing is unavailable, so the payment attempt still happens and shows its answer.
FALLBACK_INVOICE = ("INV-2002", 3400.00)


class Agent:
    """Runs the scripted calls on one connection and keeps score, so no single failure ends the run."""

    def __init__(self, client: Client, namespaced: bool) -> None:
        self.client = client
        self.namespaced = namespaced
        self.visible: set[str] = set()
        self.succeeded = 0
        self.failed = 0

    def tool_name(self, connector: str, tool: str) -> str:
        """The gateway exposes each backend tool as `<connector>__<tool>`."""
        return f"{connector}__{tool}" if self.namespaced else tool

    async def list_tools(self) -> None:
        """Print what this key is allowed to see; the gateway filters the list per key."""
        tools: list[Tool] = []
        cursor: str | None = None
        while True:
            page = await self.client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.visible = {tool.name for tool in tools}
        print(f"\n{len(tools)} tool(s) visible to this key:")
        for tool in sorted(tools, key=lambda t: t.name):
            print(f"  {tool.name:<32} {_hints(tool):<13} {_first_line(tool.description)}")

    async def call(self, connector: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Call one tool and print the outcome; return its structured result, or None if it did not succeed."""
        name = self.tool_name(connector, tool)
        shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        print(f"\n> {name}({shown})")
        if name not in self.visible:
            print("  (not in this key's tool list; calling anyway to show how the gateway answers)")
        try:
            result = await self.client.call_tool(name, arguments)
        except MCPError as exc:
            # A JSON-RPC error: the request was refused before or instead of running the tool.
            return self._failed(f"refused (error {exc.code}): {exc.message}")
        except Exception as exc:  # a broken call must not end the demo; report it and move on
            return self._failed(f"failed: {type(exc).__name__}: {exc}")
        if result.is_error:
            return self._failed(f"tool error: {_text(result)}")
        self.succeeded += 1
        data = result.structured_content
        if isinstance(data, dict):
            return data
        print(f"  ok: {_text(result)}")
        return {}

    def _failed(self, message: str) -> None:
        self.failed += 1
        print(f"  {message}")
        return None

    async def run(self) -> None:
        """The scripted task: each step uses what the previous one found, with a fallback if it failed."""
        try:
            await self.list_tools()
        except MCPError as exc:
            print(f"\nCould not list tools (error {exc.code}): {exc.message}")

        customer_id = "C-1001"
        found = await self.call("crm", "search_customers", {"query": "acme", "limit": 5})
        if found is not None:
            customers = found.get("customers") or []
            print(_fill("  ok: {total} match(es)", found))
            for customer in customers:
                print(_fill("    {id}  {name:<16} {company:<18} {status}", customer))
            customer_id = customers[0].get("id", customer_id) if customers else customer_id

        record = await self.call("crm", "get_customer", {"customer_id": customer_id})
        if record is not None:
            print(_fill("  ok: {name} <{email}>, {tier} tier, owner {owner}", record))
            print(_fill("      notes: {notes}", record))

        note = "Reviewed the account; renewal on track."
        updated = await self.call("crm", "update_record", {"customer_id": customer_id, "field": "notes", "value": note})
        if updated is not None:
            print(_fill("  ok: notes are now {notes!r} (updated {updated_at})", updated))

        invoice_id, amount = FALLBACK_INVOICE
        overdue = await self.call("finance", "list_invoices", {"status": "overdue"})
        if overdue is not None:
            invoices = overdue.get("invoices") or []
            print(_fill("  ok: {count} overdue invoice(s)", overdue))
            for invoice in invoices:
                print(_fill("    {id}  {customer_id}  {amount:>10} {currency}  due {due_date}", invoice))
            if invoices and "id" in invoices[0] and "amount" in invoices[0]:
                invoice_id, amount = invoices[0]["id"], float(invoices[0]["amount"])

        paid = await self.call("finance", "pay_invoice", {"invoice_id": invoice_id, "amount": amount})
        if paid is not None:
            print(_fill("  ok: paid {amount} {currency} on {invoice_id}, payment {payment_id}", paid))

        print(f"\nDone: {self.succeeded} call(s) succeeded, {self.failed} failed or were refused.")


class _ShowMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _fill(template: str, data: dict[str, Any]) -> str:
    """Format a line from a result, showing "?" for any field a gateway policy removed rather than crashing."""
    return template.format_map(_ShowMissing(data))


def _hints(tool: Tool) -> str:
    """Summarise the annotations a policy is most likely to key on."""
    hints = tool.annotations
    if hints is None:
        return ""
    if hints.read_only_hint:
        return "[read-only]"
    if hints.destructive_hint is not False:  # the MCP default for a tool that writes is destructive
        return "[destructive]"
    return "[writes]"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _text(result: CallToolResult) -> str:
    """The human-readable part of a result: its text blocks, or the structured content as JSON."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if texts:
        return " ".join(texts)
    return json.dumps(result.structured_content)


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    """Connection failures arrive wrapped in task-group exception groups; the leaves carry the real reason."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaf_errors(inner)]
    return [exc]


async def main_async(url: str, key: str, mode: str, namespaced: bool) -> int:
    """Connect, run the script, and turn a connection failure into a readable message and exit code."""
    http_errors: list[int] = []

    async def remember_status(response: httpx2.Response) -> None:
        # The MCP client reports a rejected connection without the HTTP status; keep it for the hint below.
        if response.status_code >= 400:
            http_errors.append(response.status_code)

    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx2.Timeout(30.0, read=300.0)
    connected = False
    try:
        async with httpx2.AsyncClient(
            headers=headers, timeout=timeout, event_hooks={"response": [remember_status]}
        ) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                connected = True
                server = client.server_info.name if client.server_info else "an unnamed server"
                print(f"Connected to {server} at {url} (protocol {client.protocol_version}, mode {mode}).")
                await Agent(client, namespaced).run()
    except Exception as exc:
        reasons = "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in _leaf_errors(exc))
        print(
            f"\n{'Lost the connection to' if connected else 'Could not connect to'} {url}: {reasons}", file=sys.stderr
        )
        if 401 in http_errors or 403 in http_errors:
            print("The gateway rejected the API key: check --key / GATEWAY_KEY.", file=sys.stderr)
        elif not connected:
            print("Is the gateway running, and is --url right?", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Parse the command line; a missing key is a usage error, caught before any network traffic."""
    parser = argparse.ArgumentParser(description="Scripted demo agent for the Autonomy Gateway quick start.")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway MCP endpoint (default: {DEFAULT_URL})")
    parser.add_argument("--key", default=os.environ.get("GATEWAY_KEY"), help="API key (default: $GATEWAY_KEY)")
    parser.add_argument(
        "--mode",
        choices=("legacy", "auto"),
        default="auto",
        help="protocol negotiation: 'legacy' forces the initialize handshake, 'auto' tries the newer one first",
    )
    # For checking the script against one backend directly, without the gateway's connector prefixes.
    parser.add_argument("--no-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.key:
        parser.error("no API key: pass --key KEY or set the GATEWAY_KEY environment variable")
    sys.exit(anyio.run(main_async, args.url, args.key, args.mode, not args.no_namespace))


if __name__ == "__main__":
    main()
