"""A restart while a backend is down: its last listing keeps policies valid and its tools known."""

from __future__ import annotations

from pathlib import Path

import anyio

from harness import (
    GatewayProcess,
    free_port,
    http_connector,
    mcp_client,
    start_http_backend,
    wait_until,
    write_gateway_config,
)

POLICIES = {
    "named.cedar": (
        '@id("echo-only")\npermit (principal, action == Action::"remote__echo", resource);\n'
        '@id("list")\npermit (principal, action == Action::"list_tools", resource);\n'
    )
}


def test_backend_down_at_restart_keeps_its_tools_and_the_policies_that_name_them(tmp_path: Path) -> None:
    backend = start_http_backend()
    port = backend.port
    write_gateway_config(
        tmp_path,
        {"remote": http_connector(backend.url, extra="connect_timeout = 2\n[restart]\ninitial_backoff = 0.2")},
        policies=POLICIES,
    )
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    key = gateway.create_key("agent")

    async def names() -> set[str]:
        async with mcp_client(gateway.url, key) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    async def echo() -> tuple[bool, str]:
        async with mcp_client(gateway.url, key) as client:
            result = await client.call_tool("remote__echo", {"text": "hi"})
            return bool(result.is_error), result.content[0].text  # type: ignore[union-attr]

    try:
        assert anyio.run(names) == {"remote__echo"}
        gateway.stop()
        backend.stop()

        gateway.start()  # the backend is down now
        ready = gateway.readyz()
        assert ready["backends"]["remote"]["state"] == "unhealthy"
        assert ready["checks"]["policies"]["state"] == "loaded"
        assert ready["checks"]["policies"]["error"] is None
        assert anyio.run(names) == {"remote__echo"}
        failed, text = anyio.run(echo)
        assert failed and "unavailable" in text

        backend = start_http_backend(port=port)
        wait_until(lambda: gateway.readyz()["backends"]["remote"]["state"] == "healthy", what="reconnection")
        assert anyio.run(echo) == (False, "hi")
    finally:
        gateway.stop()
        backend.stop()
