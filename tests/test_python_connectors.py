"""Python connectors (`kind = "python"`) in a real gateway process, called with the official `mcp` client.

The same connector module runs in process (`orders`) and in a supervised child process
(`sorders`), next to an MCP backend (`sink`) and a connector that raises at start (`billing`):
the gateway serves the others, `/readyz` names the failure and the start is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import GatewayProcess, free_port, mcp_client, stdio_connector, wait_until, write_gateway_config

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "connector_samples"

POLICIES = {
    "allow.cedar": '@id("allow-everything")\npermit (principal, action, resource);\n',
    "refunds.cedar": (
        '@id("big-refunds")\n'
        '@reason("Refunds over 1000 need the finance team: ask a finance manager.")\n'
        'forbid (principal, action in [Action::"orders__refund", Action::"sorders__refund"], resource)\n'
        "when { context.input has amount && context.input.amount > 1000 };\n"
    ),
}


def python_connector(module: str, *, isolation: str, extra: str = "") -> str:
    return (
        f'kind = "python"\nmodule = "{module}"\npath = ["{SAMPLES}"]\nisolation = "{isolation}"\n'
        f"timeout = 3\nhealth_interval = 0.5\n{extra}\n"
    )


ORDER_SETTINGS = '[settings]\ncurrency = "EUR"\napi_key = "${ORDERS_API_KEY}"\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("python-connectors")
    restart = "[restart]\ninitial_backoff = 0.2\nmax_backoff = 0.5\n"
    write_gateway_config(
        directory,
        {
            "orders": python_connector("orders_connector:connector", isolation="in-process", extra=ORDER_SETTINGS),
            "sorders": python_connector("orders_connector:connector", isolation="subprocess", extra=ORDER_SETTINGS),
            "billing": python_connector("broken_connector:connector", isolation="in-process", extra=restart),
            "sbilling": python_connector("broken_connector:connector", isolation="subprocess", extra=restart),
            "sink": stdio_connector(),
        },
        policies=POLICIES,
    )
    process = GatewayProcess(directory, free_port())
    process.start(env={"ORDERS_API_KEY": "k-123"})
    wait_until(lambda: process.readyz()["backends"]["sorders"]["state"] == "healthy", what="the subprocess connector")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("orders-bot", "support")


def text_of(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


@pytest.mark.parametrize("prefix", ["orders", "sorders"])
async def test_tools_are_listed_with_typed_schemas_and_annotations(gateway: GatewayProcess, key: str, prefix: str):
    async with mcp_client(gateway.url, key) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    get_order = tools[f"{prefix}__get_order"]
    assert get_order.description == "Read one order."
    assert get_order.input_schema["properties"]["order_id"]["description"] == "The order's id, like 'o-1'."
    assert get_order.input_schema["required"] == ["order_id"]
    assert get_order.output_schema is not None and set(get_order.output_schema["properties"]) == {
        "order_id",
        "amount",
        "currency",
    }
    assert get_order.annotations is not None and get_order.annotations.read_only_hint is True
    refund = tools[f"{prefix}__refund"].input_schema
    assert refund["properties"]["amount"]["type"] == "integer" and refund["properties"]["amount"]["minimum"] == 1
    assert refund["additionalProperties"] is False
    assert not any(name.startswith(("billing__", "sbilling__")) for name in tools)


@pytest.mark.parametrize("prefix", ["orders", "sorders"])
async def test_calls_return_structured_results_and_map_errors(gateway: GatewayProcess, key: str, prefix: str):
    async with mcp_client(gateway.url, key) as client:
        result = await client.call_tool(f"{prefix}__get_order", {"order_id": "o-1"})
        assert not result.is_error
        # The settings reached the connector: the currency, and the api_key checked at start (from ${ENV}).
        assert result.structured_content == {"order_id": "o-1", "amount": 250, "currency": "EUR"}

        missing = await client.call_tool(f"{prefix}__get_order", {"order_id": "o-missing"})
        assert missing.is_error and "No order has the id 'o-missing'" in text_of(missing)

        crashed = await client.call_tool(f"{prefix}__crash", {"why": "secret-detail-42"})
        assert crashed.is_error and "failed unexpectedly (incident" in text_of(crashed)
        assert "secret-detail-42" not in text_of(crashed) and "Traceback" not in text_of(crashed)

        # The gateway checks types against the schema before the call reaches the connector...
        invalid = await client.call_tool(f"{prefix}__refund", {"order_id": "o-1", "amount": "lots"})
        assert invalid.is_error and "argument 'amount' must be an integer" in text_of(invalid)
        # ...and pydantic checks the rest, naming the argument, before the function runs.
        too_small = await client.call_tool(f"{prefix}__refund", {"order_id": "o-1", "amount": 0})
        assert too_small.is_error and "'amount': Input should be greater than or equal to 1" in text_of(too_small)
    if prefix == "orders":  # in process, the traceback is in the gateway's own log
        assert "secret-detail-42" in gateway.log_text()


@pytest.mark.parametrize("prefix", ["orders", "sorders"])
async def test_cedar_decides_on_typed_arguments_and_the_call_is_audited(gateway: GatewayProcess, key: str, prefix: str):
    async with mcp_client(gateway.url, key) as client:
        small = await client.call_tool(f"{prefix}__refund", {"order_id": "o-7", "amount": 40, "note": "late"})
        assert not small.is_error and small.structured_content == {"order_id": "o-7", "refunded": 40, "note": "late"}
        with pytest.raises(Exception, match="Refunds over 1000 need the finance team"):
            await client.call_tool(f"{prefix}__refund", {"order_id": "o-8", "amount": 5000})
    output = gateway.cli("audit", "search", "--json", "--limit", "500", "--agent", "orders-bot").stdout
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    refunds = [e for e in entries if e.get("name") == f"{prefix}__refund"]
    allowed = next(e for e in refunds if e["decision"] == "allow" and e["outcome"] == "ok")
    assert allowed["connector"] == prefix and allowed["original_name"] == "refund"
    denied = next(e for e in refunds if e["decision"] == "deny")
    assert denied["outcome"] == "denied" and denied["policy_ids"] == ["big-refunds"]


@pytest.mark.parametrize("prefix", ["orders", "sorders"])
async def test_a_slow_call_times_out_and_the_connector_keeps_serving(gateway: GatewayProcess, key: str, prefix: str):
    async with mcp_client(gateway.url, key) as client:
        began = time.monotonic()
        slow = await client.call_tool(f"{prefix}__slow", {"seconds": 60})
        assert slow.is_error and "did not answer within 3s" in text_of(slow)
        assert time.monotonic() - began < 10
        again = await client.call_tool(f"{prefix}__get_order", {"order_id": "o-2"})
        assert not again.is_error


def test_a_connector_raising_at_start_is_named_on_readyz_and_retried(gateway: GatewayProcess, key: str) -> None:
    ready = gateway.readyz()
    assert ready["status"] == "degraded"
    billing = ready["backends"]["billing"]
    assert billing["state"] == "unhealthy"
    assert billing["detail"] == ("start failed: ConnectionError: the billing API refused the credentials (401)")
    assert ready["backends"]["sbilling"]["state"] == "unhealthy"
    assert ready["backends"]["orders"]["state"] == "healthy"
    assert ready["backends"]["orders"]["detail"] == "serving in EUR"  # the health hook, polled
    assert ready["backends"]["sink"]["state"] == "healthy"
    first = billing["restarts"]
    wait_until(lambda: gateway.readyz()["backends"]["billing"]["restarts"] > first, what="a retried start")
    wait_until(lambda: gateway.readyz()["backends"]["sbilling"]["restarts"] > 0, what="a restarted subprocess")
    # The child's reason, in the log: the author's exception, not the server's task group around it.
    assert (
        "connector 'broken_connector:connector' failed: ConnectionError: the billing API refused the credentials (401)"
        in gateway.log_text()
    )


async def test_the_other_backends_are_served_and_the_failed_one_is_refused_clearly(
    gateway: GatewayProcess, key: str
) -> None:
    async with mcp_client(gateway.url, key) as client:
        echoed = await client.call_tool("sink__echo", {"text": "still here"})
        assert text_of(echoed) == "still here"
        with pytest.raises(Exception, match="unknown tool"):
            await client.call_tool("billing__anything", {})
