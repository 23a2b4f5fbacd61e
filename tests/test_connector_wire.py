"""The call hop against backends that misbehave on the wire, each a real subprocess.

A call must get its own answer whatever else a backend writes, and a backend that dies in the
middle of an answer must fail that call at once (not at the timeout) and come back restarted.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.connectors import Connector, Listing, build_connector
from gateway.connectors.base import HealthState
from gateway.errors import BackendTimeout, BackendUnavailable
from gateway.settings.connectors import McpHttpConnector, McpStdioConnector, RestartPolicy
from harness import KITCHEN_SINK, TESTS, eventually, start_http_backend

pytestmark = pytest.mark.anyio

UNRULY = TESTS / "backends" / "unruly.py"
_FAST_RESTART = RestartPolicy(initial_backoff=0.1, max_backoff=0.5)


async def _ignore_listing(_name: str, _listing: Listing) -> None:
    pass


def stdio(script: Path, **extra: Any) -> McpStdioConnector:
    return McpStdioConnector(
        name="wire", kind="mcp-stdio", command=(sys.executable, str(script)), restart=_FAST_RESTART, **extra
    )


@asynccontextmanager
async def connected(settings: McpStdioConnector | McpHttpConnector) -> AsyncIterator[Connector]:
    async with anyio.create_task_group() as group:
        backend = build_connector(settings, _ignore_listing)
        await backend.start(group)
        try:
            assert backend.health.state is HealthState.HEALTHY, backend.health
            yield backend
        finally:
            await backend.close()


def text_of(result: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in result["content"])


async def call(backend: Connector, tool: str, **arguments: Any) -> dict[str, Any]:
    return await backend.call_tool(tool, arguments, meta=None, on_progress=None)


async def test_lines_that_are_not_json_rpc_are_skipped_and_the_call_gets_its_answer() -> None:
    async with connected(stdio(UNRULY)) as backend:
        result = await call(backend, "noisy", text="hi")
        assert text_of(result) == "noisy answered: hi"
        assert text_of(await call(backend, "echo", text="after")) == "echo answered: after"
        assert backend.health.state is HealthState.HEALTHY
        assert backend.health.restarts == 0


async def test_answers_to_unknown_ids_never_reach_a_caller() -> None:
    async with connected(stdio(UNRULY)) as backend:
        result = await call(backend, "stray", text="mine")
        assert text_of(result) == "stray answered: mine"
        assert text_of(await call(backend, "echo", text="next")) == "echo answered: next"
        assert backend.health.state is HealthState.HEALTHY


async def test_backend_exiting_mid_answer_fails_the_call_at_once_and_is_restarted() -> None:
    async with connected(stdio(UNRULY, timeout=30)) as backend:
        started = anyio.current_time()
        with pytest.raises(BackendUnavailable, match="went away during the call"):
            await call(backend, "cut", text="x")
        assert anyio.current_time() - started < 10, "a dead backend must not be waited out to the timeout"
        await eventually(lambda: backend.health.restarts >= 1 and backend.health.state is HealthState.HEALTHY)
        assert text_of(await call(backend, "echo", text="back")) == "echo answered: back"


async def test_concurrent_calls_each_get_their_own_answer() -> None:
    async with connected(stdio(KITCHEN_SINK)) as backend:
        results: dict[int, str] = {}

        async def one(index: int) -> None:
            results[index] = text_of(await call(backend, "echo", text=f"call {index}"))

        async with anyio.create_task_group() as group:
            for index in range(40):
                group.start_soon(one, index)
        assert results == {index: f"call {index}" for index in range(40)}


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_progress_reaches_the_caller_in_order(protocol: str) -> None:
    async with connected(stdio(KITCHEN_SINK, protocol=protocol)) as backend:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        result = await backend.call_tool("slow", {"steps": 3}, meta=None, on_progress=on_progress)
        assert text_of(result) == "done after 3 steps"
        await eventually(lambda: len(seen) == 3)
        assert seen == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_timed_out_call_is_cancelled_at_the_backend_which_keeps_serving(protocol: str, tmp_path: Path) -> None:
    settings = stdio(KITCHEN_SINK, timeout=2, protocol=protocol, env={"KITCHEN_SINK_MARKERS": str(tmp_path)})
    async with connected(settings) as backend:
        assert text_of(await call(backend, "echo", text="warm")) == "warm"
        with pytest.raises(BackendTimeout):
            await call(backend, "hang", marker="timed-out")
        await eventually((tmp_path / "timed-out.cancelled").exists, timeout=10, what="the cancellation")
        assert text_of(await call(backend, "echo", text="still here")) == "still here"
        assert backend.health.restarts == 0


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_http_backend_dying_mid_call_fails_the_call_at_once(protocol: str) -> None:
    served = start_http_backend()
    try:
        settings = McpHttpConnector(
            name="wire", kind="mcp-http", url=served.url, protocol=protocol, timeout=30, restart=_FAST_RESTART
        )
        async with connected(settings) as backend:
            assert text_of(await call(backend, "echo", text="over http")) == "over http"
            started = anyio.current_time()
            with pytest.raises(BackendUnavailable):
                await call(backend, "crash")
            assert anyio.current_time() - started < 10
            await eventually(lambda: backend.health.state is HealthState.UNHEALTHY)
    finally:
        served.stop()


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_timed_out_http_call_is_cancelled_at_the_backend(protocol: str, tmp_path: Path) -> None:
    """2025-11-25 hears `notifications/cancelled`; at 2026-07-28 the closed response stream says it."""
    served = start_http_backend(env={"KITCHEN_SINK_MARKERS": str(tmp_path)})
    try:
        settings = McpHttpConnector(name="wire", kind="mcp-http", url=served.url, protocol=protocol, timeout=2)
        async with connected(settings) as backend:
            assert text_of(await call(backend, "echo", text="warm")) == "warm"
            with pytest.raises(BackendTimeout):
                await call(backend, "hang", marker="timed-out")
            await eventually((tmp_path / "timed-out.cancelled").exists, timeout=10, what="the cancellation")
            assert text_of(await call(backend, "echo", text="still here")) == "still here"
    finally:
        served.stop()


async def test_http_backend_behind_a_same_origin_redirect_answers_calls() -> None:
    """A URL the server redirects (here `/mcp/` to `/mcp`) works for calls as it does for the handshake."""
    served = start_http_backend()
    try:
        settings = McpHttpConnector(name="wire", kind="mcp-http", url=served.url + "/", protocol="legacy")
        async with connected(settings) as backend:
            assert text_of(await call(backend, "echo", text="redirected")) == "redirected"
            assert text_of(await call(backend, "echo", text="again")) == "again"
    finally:
        served.stop()


async def test_a_cookie_a_backend_sets_is_never_sent_back_with_later_calls() -> None:
    """One connection carries every agent's calls: a cookie set in one answer must not ride along with the next."""
    served = start_http_backend(TESTS / "backends" / "cookie_setter.py")
    try:
        # By host name: a cookie jar keeps no cookies of a bare IP address.
        url = served.url.replace("127.0.0.1", "localhost")
        settings = McpHttpConnector(name="wire", kind="mcp-http", url=url)
        async with connected(settings) as backend:
            for _ in range(3):
                result = await call(backend, "cookies")
                assert result["structuredContent"] == {"cookie": None}
    finally:
        served.stop()
