"""The contract every Python connector must pass, run by `gateway connectors check` and by authors' tests.

Each check is one sentence of the contract with a verdict: the tools' names and schemas are ones
an MCP client and Cedar can use, the connector starts, reports health and closes, errors reach
the agent as tool errors, and a call that is cancelled stops promptly. Nothing here calls a tool
with arguments it accepts unless the author names the call (`calls`): a contract check must not
refund an order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from jsonschema import Draft202012Validator, SchemaError

from gateway.sdk.connector import Connector
from gateway.sdk.tools import TOOL_NAME

#: A cancelled call must end within this many seconds of its cancellation.
PROMPT_CANCEL_SECONDS = 1.0
_PROBE = "__contract_probe__"


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    passed: bool
    detail: str
    #: A check that had nothing to look at (no call named): neither passed nor failed.
    skipped: bool = False


async def run_contract(
    connector: Connector[Any],
    settings: Mapping[str, Any] | None = None,
    calls: Mapping[str, dict[str, Any]] | None = None,
    *,
    cancel_after: float = 0.5,
) -> list[Verdict]:
    """Every check, in order; later ones run only when the connector started."""
    verdicts = [_names(connector), _schemas(connector), _descriptions(connector)]
    try:
        with anyio.fail_after(30):
            await connector.start(settings or {})
    except Exception as exc:
        verdicts.append(Verdict("start", False, f"start raised {type(exc).__name__}: {exc}"))
        return verdicts
    verdicts.append(Verdict("start", True, "start finished"))
    try:
        verdicts.append(await _health(connector))
        verdicts.append(await _errors_mapped(connector))
        if calls:
            for name, arguments in calls.items():
                verdicts.append(await _cancellation(connector, name, arguments, cancel_after))
        else:
            verdicts.append(
                Verdict(
                    "cancellation",
                    True,
                    "no call named: give one with --call TOOL='{...}' (a slow one) to check it stops when cancelled",
                    skipped=True,
                )
            )
    finally:
        try:
            with anyio.fail_after(30):
                await connector.close()
        except Exception as exc:
            verdicts.append(Verdict("close", False, f"close raised {type(exc).__name__}: {exc}"))
        else:
            verdicts.append(Verdict("close", True, "close finished"))
    return verdicts


def _names(connector: Connector[Any]) -> Verdict:
    if not connector.tools:
        return Verdict("tool names", False, "the connector has no tools: decorate a function with @connector.tool()")
    bad = [name for name in connector.tools if not TOOL_NAME.fullmatch(name)]
    if bad:
        return Verdict("tool names", False, f"not valid MCP tool names: {', '.join(bad)}")
    return Verdict("tool names", True, f"{len(connector.tools)} tool(s): {', '.join(connector.tools)}")


def _schemas(connector: Connector[Any]) -> Verdict:
    problems = []
    for definition in connector.definitions():
        for key in ("inputSchema", "outputSchema"):
            schema = definition.get(key)
            if schema is None:
                continue
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.append(f"{definition['name']}.{key}: {exc.message}")
                continue
            if schema.get("type") != "object":
                problems.append(f"{definition['name']}.{key}: must be an object schema, not {schema.get('type')!r}")
    if problems:
        return Verdict("schemas", False, "; ".join(problems))
    return Verdict("schemas", True, "every input and output schema is a valid JSON Schema (2020-12) object")


def _descriptions(connector: Connector[Any]) -> Verdict:
    missing = [name for name, tool in connector.tools.items() if not tool.description.strip()]
    if missing:
        return Verdict(
            "descriptions", False, f"no description (the model reads it to choose the tool): {', '.join(missing)}"
        )
    return Verdict("descriptions", True, "every tool has a description")


async def _health(connector: Connector[Any]) -> Verdict:
    try:
        with anyio.fail_after(10):
            detail = await connector.check_health()
    except TimeoutError:
        return Verdict("health", False, "the health hook did not answer within 10s")
    except Exception as exc:
        return Verdict("health", False, f"the health hook reports unhealthy: {type(exc).__name__}: {exc}")
    return Verdict("health", True, detail or "healthy (no health hook: the connector is healthy once started)")


async def _errors_mapped(connector: Connector[Any]) -> Verdict:
    """Arguments no schema accepts must come back as a tool error naming them, with the function never run."""
    problems = []
    for name in connector.tools:
        result = await connector.call(name, {_PROBE: True})
        text = " ".join(str(part.get("text", "")) for part in result.get("content", []))
        if result.get("isError") is not True or _PROBE not in text:
            problems.append(f"{name} accepted an unknown argument instead of refusing it")
    unknown = await connector.call("__no_such_tool__", {})
    if unknown.get("isError") is not True:
        problems.append("an unknown tool did not give a tool error")
    if problems:
        return Verdict("errors mapped", False, "; ".join(problems))
    return Verdict("errors mapped", True, "invalid arguments and unknown tools give tool errors naming the problem")


async def _cancellation(
    connector: Connector[Any], name: str, arguments: dict[str, Any], cancel_after: float
) -> Verdict:
    check = f"cancellation of {name}"
    if name not in connector.tools:
        return Verdict(
            check, False, f"the connector has no tool named {name!r} (its tools: {', '.join(connector.tools)})"
        )
    outcome: dict[str, Any] = {}
    began = time.monotonic()
    with anyio.CancelScope() as scope:
        scope.deadline = anyio.current_time() + cancel_after
        outcome = await connector.call(name, arguments)
    ended = time.monotonic()
    if not scope.cancelled_caught and ended - began <= cancel_after + PROMPT_CANCEL_SECONDS:
        if outcome.get("isError"):
            # A call refused at once never ran long enough to be cancelled: nothing was checked.
            text = " ".join(str(part.get("text", "")) for part in outcome.get("content", []))
            return Verdict(
                check,
                False,
                f"answered with a tool error before it could be cancelled, so cancellation was not checked: {text}; "
                "name a call the tool accepts (a slow, harmless one)",
            )
        return Verdict(check, True, f"answered with a result in {ended - began:.2f}s, before the cancellation")
    late = ended - (began + cancel_after)
    if late > PROMPT_CANCEL_SECONDS:
        return Verdict(
            check,
            False,
            f"kept running {late:.1f}s after it was cancelled: it blocks the event loop (an `async def` doing "
            "blocking work); use async I/O, or a plain `def`, which runs in a worker thread",
        )
    return Verdict(check, True, f"stopped {late * 1000:.0f} ms after it was cancelled")
