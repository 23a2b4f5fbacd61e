"""Resources of several backends through one gateway: three real kitchen-sink backends offer the
same static URI and the same template, and each stays listed, readable and addressable on its own,
in listings, reads, tool and prompt results, change notifications, policies and the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness import (
    BackendProcess,
    GatewayProcess,
    free_port,
    http_connector,
    mcp_client,
    start_http_backend,
    stdio_connector,
    write_gateway_config,
)

CLIENT_MODES = ["legacy", "auto"]
README = "sink://static/readme"
ITEMS = "sink://items/{item_id}"
BACKENDS = ("one", "two", "three")
EXPOSED_README = {name: f"gateway://{name}/{README}" for name in BACKENDS}
EXPOSED_ITEMS = {name: f"gateway://{name}/{ITEMS}" for name in BACKENDS}

POLICIES = {
    "access.cedar": """
@id("full-access")
permit (principal in Role::"full", action, resource);

@id("reader-lists")
permit (principal in Role::"reader", action == Action::"list_tools", resource);

@id("reader-reads-one-readme")
permit (
  principal in Role::"reader",
  action == Action::"read_resource",
  resource == Resource::"gateway://one/sink://static/readme"
);
"""
}


@pytest.fixture(scope="module")
def remote_backend() -> Iterator[BackendProcess]:
    backend = start_http_backend(env={"KITCHEN_SINK_INSTANCE": "two", "KITCHEN_SINK_SUBSCRIBE": "1"})
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, remote_backend: BackendProcess) -> Iterator[GatewayProcess]:
    """The same resources from three backends: `one` over stdio and `two` over HTTP at the
    session-based revision (both send updates unasked; `two` also takes `resources/subscribe`),
    and `three` over stdio at 2026-07-28 (updates only on listen streams naming them).
    """
    directory = tmp_path_factory.mktemp("gateway")
    connectors = {
        "one": stdio_connector(extra='protocol = "legacy"', env={"KITCHEN_SINK_INSTANCE": "one"}),
        "two": http_connector(remote_backend.url, extra='protocol = "legacy"'),
        "three": stdio_connector(env={"KITCHEN_SINK_INSTANCE": "three"}),
    }
    write_gateway_config(directory, connectors, policies=POLICIES)
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("resource-reader", "full")


@pytest.fixture(scope="module")
def reader_key(gateway: GatewayProcess) -> str:
    return gateway.create_key("one-readme-reader", "reader")


def text_of(result: types.ReadResourceResult) -> str:
    (content,) = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_every_backends_resources_and_templates_are_listed(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        resources = (await client.list_resources()).resources
        assert sorted((r.uri, r.name) for r in resources) == sorted(
            (EXPOSED_README[name], f"{name}__readme") for name in BACKENDS
        )
        templates = (await client.list_resource_templates()).resource_templates
        assert sorted(t.uri_template for t in templates) == sorted(EXPOSED_ITEMS.values())


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_each_read_reaches_the_backend_that_listed_it(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        for name in BACKENDS:
            readme = await client.read_resource(EXPOSED_README[name])
            assert text_of(readme) == f"kitchen sink readme from {name}"
            assert readme.contents[0].uri == EXPOSED_README[name]

            # The exposed template expands, with the backend's own variables, to a URI of that backend.
            template = next(
                t.uri_template
                for t in (await client.list_resource_templates()).resource_templates
                if t.uri_template.startswith(f"gateway://{name}/")
            )
            item = await client.read_resource(template.replace("{item_id}", "42"))
            assert json.loads(text_of(item)) == {"id": "42", "instance": name}
            assert item.contents[0].uri == f"gateway://{name}/sink://items/42"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_uris_in_tool_and_prompt_results_name_their_backend(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        result = await client.call_tool("two__link_resources", {})
        text, link, embedded = result.content
        assert isinstance(text, types.TextContent) and text.text == "see the readme"
        assert isinstance(link, types.ResourceLink) and link.uri == EXPOSED_README["two"]
        assert isinstance(embedded, types.EmbeddedResource)
        assert embedded.resource.uri == "gateway://two/sink://items/7"
        # What a result links to can be read as it is given.
        assert text_of(await client.read_resource(link.uri)) == "kitchen sink readme from two"

        prompt = await client.get_prompt("one__cite_item", {"item_id": "9"})
        cited = prompt.messages[0].content
        assert isinstance(cited, types.EmbeddedResource)
        assert cited.resource.uri == "gateway://one/sink://items/9"


@pytest.mark.anyio
async def test_resource_updates_name_the_backend_that_sent_them(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key, mode="auto") as client:
        wanted = {EXPOSED_README["one"], EXPOSED_README["two"]}
        seen: set[str] = set()
        async with client.listen(resource_subscriptions=sorted(wanted)) as subscription:
            for name in ("two", "one"):
                await client.call_tool(f"{name}__announce_update", {"uri": README})
            with anyio.fail_after(30):
                async for event in subscription:
                    seen.add(event.uri)  # type: ignore[union-attr]
                    if seen >= wanted:
                        break
        assert seen == wanted


async def until_subscribed(client: Client, backend: str, expected: list[str]) -> None:
    """Poll the backend's own record of its subscriptions until it is `expected`."""
    with anyio.fail_after(30):
        while True:
            result = await client.call_tool(f"{backend}__subscriptions", {})
            if json.loads(text_of_call(result)) == expected:
                return
            await anyio.sleep(0.05)


def text_of_call(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.mark.anyio
async def test_a_listening_agent_has_a_session_based_backend_subscribe_and_unsubscribe(
    gateway: GatewayProcess, key: str
) -> None:
    async with mcp_client(gateway.url, key, mode="auto") as client:
        async with client.listen(resource_subscriptions=[EXPOSED_README["two"]]):
            await until_subscribed(client, "two", [README])
        await until_subscribed(client, "two", [])


@pytest.mark.anyio
async def test_a_2026_backend_is_asked_for_the_updates_agents_listen_for(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key, mode="auto") as client:
        async with client.listen(resource_subscriptions=[EXPOSED_README["three"]]) as subscription:

            async def announce_until_heard() -> None:
                # The backend's own listen stream opens after the agent's is acknowledged: an update
                # announced before then reaches no one, so it is announced again until one arrives.
                while True:
                    await client.call_tool("three__announce_update", {"uri": README})
                    await anyio.sleep(0.2)

            async with anyio.create_task_group() as announcing:
                announcing.start_soon(announce_until_heard)
                with anyio.fail_after(30):
                    event = await anext(aiter(subscription))
                announcing.cancel_scope.cancel()
        assert event.uri == EXPOSED_README["three"]  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_an_agent_hears_of_updates_only_to_resources_it_may_read(
    gateway: GatewayProcess, key: str, reader_key: str
) -> None:
    async with (
        mcp_client(gateway.url, reader_key, mode="auto") as reader,
        mcp_client(gateway.url, key, mode="auto") as announcer,
    ):
        async with reader.listen(resource_subscriptions=sorted(EXPOSED_README.values())) as subscription:
            assert subscription.honored is not None
            assert subscription.honored.resource_subscriptions == [EXPOSED_README["one"]]
            for name in ("two", "one"):
                await announcer.call_tool(f"{name}__announce_update", {"uri": README})
            with anyio.fail_after(30):
                event = await anext(aiter(subscription))
        assert event.uri == EXPOSED_README["one"]  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_policy_on_one_exposed_uri_permits_that_backend_only(gateway: GatewayProcess, reader_key: str) -> None:
    async with mcp_client(gateway.url, reader_key, mode="auto") as client:
        assert [r.uri for r in (await client.list_resources()).resources] == [EXPOSED_README["one"]]
        assert text_of(await client.read_resource(EXPOSED_README["one"])) == "kitchen sink readme from one"
        with pytest.raises(MCPError) as denied:
            await client.read_resource(EXPOSED_README["two"])
        assert "denied" in denied.value.error.message


@pytest.mark.anyio
async def test_a_backend_uri_without_the_gateway_form_is_refused_with_the_form_to_use(
    gateway: GatewayProcess, key: str
) -> None:
    async with mcp_client(gateway.url, key, mode="auto") as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(README)
        assert "gateway://<connector>/<the backend's URI>" in refused.value.error.message
        with pytest.raises(MCPError) as unknown:
            await client.read_resource(f"gateway://four/{README}")
        assert "there is no backend named 'four'" in unknown.value.error.message


@pytest.mark.anyio
async def test_the_audit_log_records_the_exposed_and_the_backend_uri(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key, mode="auto") as client:
        await client.read_resource(EXPOSED_README["two"])
    output = gateway.cli("audit", "search", "--json", "--limit", "500", "--tool", EXPOSED_README["two"]).stdout
    reads: list[dict[str, Any]] = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert reads, "the read was not recorded under its exposed URI"
    assert all(r["connector"] == "two" and r["original_name"] == README for r in reads)
