"""Sessions of the handshake era live in their sealed ids: any gateway process can serve any request.

The sealing itself is checked directly (forgery, expiry, rotation, ending); the deployment is
checked end to end: two gateway processes sharing PostgreSQL and a session key, one legacy
client whose requests alternate between them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from gateway.front.sessions import SessionSealer
from gateway.identity.principal import Principal
from gateway.storage import Database
from gateway.storage.ended_sessions import EndedSessionsTable
from harness import (
    KITCHEN_SINK_MARKERS_ENV,
    GatewayProcess,
    eventually,
    free_port,
    open_legacy_session,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

KEY_A = "k" * 40
KEY_B = "b" * 40
AGENT = Principal(agent="agent-1", roles=(), credential_id="key-1")


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", None) == "text")


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sealed_id_opens_to_what_was_sealed() -> None:
    sealer = SessionSealer([KEY_A], lifetime=60)
    session, token = sealer.issue(AGENT, "2025-11-25", "agent-app", "1.2")
    opened = sealer.open(token)
    assert opened == session
    assert (opened.protocol_version, opened.client_name, opened.client_version) == ("2025-11-25", "agent-app", "1.2")
    assert "agent-1" not in token and "agent-app" not in token  # sealed, not merely signed


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        lambda token: token[:10] + token[11:],
        lambda token: "s1.not-base64!!",
        lambda token: "",
        lambda token: "s1." + "A" * 5000,
        lambda token: token.replace("s1.", "s2."),
    ],
)
def test_forged_or_altered_ids_do_not_open(tamper: Any) -> None:
    sealer = SessionSealer([KEY_A], lifetime=60)
    _, token = sealer.issue(AGENT, "2025-11-25", None, None)
    assert sealer.open(tamper(token)) is None


def test_ids_expire_after_their_lifetime() -> None:
    clock = _Clock()
    sealer = SessionSealer([KEY_A], lifetime=60, clock=clock)
    _, token = sealer.issue(AGENT, "2025-11-25", None, None)
    clock.now += 59
    assert sealer.open(token) is not None
    clock.now += 2
    assert sealer.open(token) is None


def test_key_rotation_keeps_open_sessions_and_drops_retired_keys() -> None:
    old = SessionSealer([KEY_A], lifetime=60)
    _, token = old.issue(AGENT, "2025-11-25", None, None)
    rotating = SessionSealer([KEY_B, KEY_A], lifetime=60)  # new key first: it seals, both open
    assert rotating.open(token) is not None
    _, new_token = rotating.issue(AGENT, "2025-11-25", None, None)
    assert old.open(new_token) is None  # a process without the new key refuses new ids
    retired = SessionSealer([KEY_B], lifetime=60)
    assert retired.open(token) is None
    assert retired.open(new_token) is not None


def test_an_ended_session_stays_ended_until_it_would_have_expired() -> None:
    clock = _Clock()
    sealer = SessionSealer([KEY_A], lifetime=60, clock=clock)
    session, token = sealer.issue(AGENT, "2025-11-25", None, None)
    sealer.end(session)
    assert sealer.open(token) is None
    other, other_token = sealer.issue(AGENT, "2025-11-25", None, None)
    assert sealer.open(other_token) == other


# -- two processes, one session ------------------------------------------------------------


class _Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the other gateway than the previous one, like a round-robin balancer."""

    def __init__(self, ports: list[int]) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._ports = ports
        self._next = 0
        self.served: list[tuple[int, str, str | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self._ports[self._next % len(self._ports)]
        self._next += 1
        request.url = request.url.copy_with(port=port)
        method = None
        if request.method == "POST":
            method = json.loads(request.content or b"{}").get("method")
        self.served.append((port, request.method, method))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str, markers: Path
) -> Iterator[list[GatewayProcess]]:
    gateways = []
    for name in ("gw-a", "gw-b"):
        directory = tmp_path_factory.mktemp(name)
        write_gateway_config(
            directory,
            {"sink": stdio_connector(env={KITCHEN_SINK_MARKERS_ENV: str(markers)})},
            database_url=module_postgres_url,
            server_extra=f'session_keys = ["{KEY_A}"]',
            extra=f'\n[audit]\nreplica_id = "{name}-sessions"\n',
        )
        gateways.append(GatewayProcess(directory, free_port()))
    try:
        for gateway in gateways:
            gateway.start()
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()


@asynccontextmanager
async def _alternating_client(pair: list[GatewayProcess], key: str) -> AsyncIterator[tuple[Client, _Alternating]]:
    balancer = _Alternating([gateway.port for gateway in pair])
    async with httpx2.AsyncClient(
        transport=balancer, headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300)
    ) as http_client:
        transport = streamable_http_client(pair[0].url, http_client=http_client)
        async with Client(transport, mode="legacy") as client:
            yield client, balancer


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_legacy_session_is_served_by_either_gateway(pair: list[GatewayProcess], markers: Path) -> None:
    key = pair[0].create_key("roaming-agent")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with _alternating_client(pair, key) as (client, balancer):
        assert "sink__echo" in {tool.name for tool in (await client.list_tools()).tools}
        for index in range(4):
            assert text_of(await client.call_tool("sink__echo", {"text": f"hop {index}"})) == f"hop {index}"
        result = await client.call_tool("sink__slow", {"steps": 3}, progress_callback=on_progress)
        assert text_of(result) == "done after 3 steps"
        assert progress == [1, 2, 3]
        calls = [port for port, verb, method in balancer.served if method == "tools/call"]
        assert set(calls) == {gateway.port for gateway in pair}, "both gateways served calls of the one session"

        # Cancel a call running on one gateway through the other: the signal crosses via PostgreSQL.
        marker = "roaming"
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "sink__hang", {"marker": marker})
            await eventually((markers / f"{marker}.started").exists, timeout=20, what="the call to start")
            group.cancel_scope.cancel()
        await eventually((markers / f"{marker}.cancelled").exists, timeout=20, what="the cancellation")
        served = balancer.served
        call_at = max(i for i, (_, _, method) in enumerate(served) if method == "tools/call")
        cancel_at = next(i for i, (_, _, method) in enumerate(served) if method == "notifications/cancelled")
        assert served[call_at][0] != served[cancel_at][0], "the cancellation went to the other gateway"


@pytest.mark.postgres
def test_a_session_ended_on_one_gateway_is_refused_by_the_other(pair: list[GatewayProcess]) -> None:
    session = open_legacy_session(pair[0].url, pair[0].create_key("leaving-agent"))
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert httpx.post(pair[1].url, json=listing, headers=session).status_code == 200
    assert httpx.delete(pair[1].url, headers=session).status_code == 200
    assert httpx.post(pair[1].url, json=listing, headers=session).status_code == 404

    def refused_by_first() -> bool:
        return httpx.post(pair[0].url, json=listing, headers=session).status_code == 404

    anyio.run(functools.partial(eventually, refused_by_first, timeout=10, what="the other gateway to hear of it"))


@pytest.mark.postgres
def test_another_credential_cannot_use_the_session_on_either_gateway(pair: list[GatewayProcess]) -> None:
    session = open_legacy_session(pair[0].url, pair[0].create_key("owner"))
    intruder = pair[0].create_key("intruder")
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for gateway in pair:
        hijack = httpx.post(gateway.url, json=listing, headers={**session, "Authorization": f"Bearer {intruder}"})
        assert hijack.status_code == 404


@pytest.mark.postgres
def test_ending_a_session_on_one_gateway_closes_its_standing_stream_on_the_other(pair: list[GatewayProcess]) -> None:
    session = open_legacy_session(pair[0].url, pair[0].create_key("streaming-agent"))
    with httpx.stream("GET", pair[0].url, headers=session, timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert httpx.delete(pair[1].url, headers=session).status_code == 200
        remaining = b"".join(stream.iter_bytes())  # returns only once the gateway ends the stream
    assert b"list_changed" not in remaining


@pytest.mark.postgres
def test_a_session_ended_before_a_gateway_started_is_refused_by_it(
    pair: list[GatewayProcess], module_postgres_url: str, tmp_path: Path
) -> None:
    session = open_legacy_session(pair[0].url, pair[0].create_key("departed-agent"))
    assert httpx.delete(pair[0].url, headers=session).status_code == 200

    write_gateway_config(
        tmp_path,
        {"sink": stdio_connector()},
        database_url=module_postgres_url,
        server_extra=f'session_keys = ["{KEY_A}"]',
        extra='\n[audit]\nreplica_id = "gw-late-sessions"\n',
    )
    late = GatewayProcess(tmp_path, free_port())
    late.start()
    try:
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert httpx.post(late.url, json=listing, headers=session).status_code == 404
    finally:
        late.stop()


def test_a_restarted_gateway_keeps_its_sessions_but_not_the_ended_ones(tmp_path: Path) -> None:
    write_gateway_config(tmp_path, {"sink": stdio_connector()}, server_extra=f'session_keys = ["{KEY_A}"]')
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    try:
        key = gateway.create_key("restarting-agent")
        kept = open_legacy_session(gateway.url, key)
        ended = open_legacy_session(gateway.url, key)
        assert httpx.delete(gateway.url, headers=ended).status_code == 200
        gateway.stop()
        gateway.start()
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert httpx.post(gateway.url, json=listing, headers=kept).status_code == 200
        assert httpx.post(gateway.url, json=listing, headers=ended).status_code == 404
    finally:
        gateway.stop()


def test_a_running_gateway_refuses_a_session_another_process_ended_without_a_signal(tmp_path: Path) -> None:
    """The periodic read of ended sessions: the bound on a signal that never arrived."""
    write_gateway_config(tmp_path, {"sink": stdio_connector()}, server_extra=f'session_keys = ["{KEY_A}"]')
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    try:
        session = open_legacy_session(gateway.url, gateway.create_key("missed-signal-agent"))
        opened = SessionSealer([KEY_A], lifetime=86400).open(session["Mcp-Session-Id"])
        assert opened is not None
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert httpx.post(gateway.url, json=listing, headers=session).status_code == 200

        async def end_elsewhere() -> None:
            database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
            try:
                await EndedSessionsTable(database).add(opened.id, time.time() + 3600)
            finally:
                await database.close()

        anyio.run(end_elsewhere)
        wait_until(
            lambda: httpx.post(gateway.url, json=listing, headers=session).status_code == 404,
            timeout=30,
            what="the gateway to read the ended session back",
        )
    finally:
        gateway.stop()
