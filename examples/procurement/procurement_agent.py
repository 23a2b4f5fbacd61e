"""What the three procurement agents share: one MCP connection to the gateway, in one workflow.

Each agent is a scripted stand-in for an LLM agent: it connects with its own API key, names the
workflow it works in with the `X-Workflow-Id` header on every request, reads the workflow's
shared state with `gateway__workflow_status`, calls its own system's tools, and prints every
call with its outcome. A call the gateway refuses is printed with the reason it gave, which is
what an LLM agent would read to decide what to do next.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

DEFAULT_URL = "http://127.0.0.1:8788/mcp"
WORKFLOW_HEADER = "X-Workflow-Id"


class Refused(Exception):
    """The gateway or the backend said no; the message is what the agent was told."""


@dataclass
class Step:
    """One step of the workflow as `gateway__workflow_status` reports it."""

    tool: str
    agent: str
    outcome: str | None
    summary: Any

    def result(self) -> dict[str, Any] | None:
        """The step's shared result as an object, when the connector shares it and it parses."""
        if isinstance(self.summary, dict):
            return self.summary
        if isinstance(self.summary, str):
            try:
                parsed = json.loads(self.summary)
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
        return None


@dataclass
class WorkflowState:
    """What the other agents did in this workflow so far: steps, oldest first, and hand-off notes."""

    steps: list[Step]
    notes: list[dict[str, Any]]

    def last_success(self, tool: str) -> Step | None:
        done = [step for step in self.steps if step.tool == tool and step.outcome == "ok"]
        return done[-1] if done else None


class WorkflowAgent:
    """An agent's connection: calls print themselves; a refusal raises `Refused` with its reason."""

    def __init__(self, client: Client, name: str, workflow: str) -> None:
        self.client = client
        self.name = name
        self.workflow = workflow

    async def call(self, tool: str, arguments: dict[str, Any], *, quiet: bool = False) -> dict[str, Any]:
        """Call `tool`; return its structured result, or raise `Refused` with what the agent was told."""
        if not quiet:
            shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
            print(f"  > {tool}({shown})")
        try:
            result = await self.client.call_tool(tool, arguments)
        except MCPError as exc:  # refused before the tool ran: policy, unknown tool, bad arguments
            raise Refused(f"refused by the gateway (error {exc.code}): {exc.message}") from exc
        if result.is_error:
            raise Refused(f"tool error: {text_of(result)}")
        data = result.structured_content
        if isinstance(data, dict):
            return data
        try:
            parsed = json.loads(text_of(result))
        except ValueError:
            return {"text": text_of(result)}
        return parsed if isinstance(parsed, dict) else {"value": parsed}

    async def status(self) -> WorkflowState:
        """The workflow's shared state, as every agent in it sees it."""
        data = await self.call("gateway__workflow_status", {}, quiet=True)
        steps = [
            Step(
                tool=str(step.get("tool") or ""),
                agent=str(step.get("agent") or ""),
                outcome=step.get("outcome"),
                summary=step.get("summary"),
            )
            for step in data.get("steps") or []
        ]
        return WorkflowState(steps=steps, notes=list(data.get("notes") or []))

    async def note(self, text: str) -> None:
        """Leave a hand-off note the other agents read in `gateway__workflow_status`."""
        await self.call("gateway__workflow_note", {"text": text})


def text_of(result: CallToolResult) -> str:
    """The human-readable part of a result: its text blocks, or the structured content as JSON."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    return " ".join(texts) if texts else json.dumps(result.structured_content)


@asynccontextmanager
async def connected(url: str, key: str, workflow: str, name: str) -> AsyncIterator[WorkflowAgent]:
    """One MCP session with the gateway, every request of it in `workflow`."""
    headers = {"Authorization": f"Bearer {key}", WORKFLOW_HEADER: workflow}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield WorkflowAgent(client, name, workflow)


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line every agent takes: where the gateway is, its key, the workflow."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL), help="gateway MCP endpoint")
    parser.add_argument("--key", default=os.environ.get("GATEWAY_KEY"), help="this agent's API key ($GATEWAY_KEY)")
    parser.add_argument("--workflow", required=True, help="the workflow id every agent of this purchase shares")
    return parser


def run(name: str, args: argparse.Namespace, work: Callable[[WorkflowAgent], Awaitable[int]]) -> None:
    """Connect as agent `name`, do `work`, and exit with its status; a refusal is exit status 2."""
    if not args.key:
        sys.exit(f"{name}: no API key: pass --key KEY or set GATEWAY_KEY")

    async def main() -> int:
        print(f"[{name}] workflow {args.workflow}")
        async with connected(args.url, args.key, args.workflow, name) as agent:
            # Caught inside the connection: leaving it wraps an exception in the client's task groups.
            try:
                return await work(agent)
            except Refused as exc:
                print(f"  ✗ {exc}")
                return 2

    try:
        sys.exit(anyio.run(main))
    except OSError as exc:
        sys.exit(f"{name}: could not reach the gateway at {args.url}: {exc}")
