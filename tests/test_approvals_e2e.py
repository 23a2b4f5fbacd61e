"""Held calls end to end: real gateway processes, the quick start's finance server, the official
`mcp` client over HTTP and the `gateway` command line, as an agent and its approvers meet them.

Each test writes approval policies into its own `policies/approval/`, seals held calls with a key
of its own, and waits on conditions (never on sleeps). The finance server runs as an HTTP backend
of its own, so a payment it made outlives a gateway that is killed and started again: an invoice
paid twice would answer "already paid", and the audit log counts the runs. A call that must
still be running when its gateway is killed goes to the kitchen-sink backend's `hang` instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.holding import NO_WAIT_META_KEY
from gateway.notifications.signing import EVENT_HEADER, SIGNATURE_HEADER, verify
from harness import (
    KITCHEN_SINK,
    MCP_HEADERS,
    BackendProcess,
    GatewayProcess,
    eventually,
    free_port,
    http_connector,
    initialize_request,
    mcp_client,
    start_http_backend,
    wait_until,
    write_gateway_config,
)
from local_issuer import AUDIENCE, LocalIssuer

ROOT = Path(__file__).resolve().parents[1]
FINANCE_SERVER = ROOT / "examples" / "quickstart" / "finance_server.py"
PAY = "finance__pay_invoice"
#: An open invoice of the finance server over the 1,000 the policies hold at, and its exact amount.
INVOICE = {"invoice_id": "INV-2001", "amount": 12500.0}
NO_WAIT: dict[str, Any] = {NO_WAIT_META_KEY: True}
WEBHOOK_SECRET = "tests-webhook-secret-0123456789"
CALL_DEADLINE = 30.0
#: How long a held call keeps its request open: longer than any test takes to decide it.
MAX_WAIT = 20.0


def approval_policy(*, quorum: int = 1, expires: str = "PT1H", escalation: str = "") -> str:
    """Payments over 1,000 wait for `quorum` finance managers, as the quick start's approval policy."""
    return f"""
@id("large-payments-need-a-manager")
@approvers("role:finance-managers")
@quorum("{quorum}")
@expires("{expires}"){escalation}
@reason("Payments over 1,000 wait for a finance manager's approval.")
permit (principal, action == Action::"finance__pay_invoice", resource)
when {{ context.input.amount.greaterThan(decimal("1000.0")) }};
"""


@dataclass
class World:
    """A gateway before a backend (the finance server, unless a test needs a call that hangs), an
    agent's key, and the approvers' keys by name."""

    gateway: GatewayProcess
    backend: BackendProcess
    agent_key: str
    approvers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def started(cls, gateway: GatewayProcess, backend: BackendProcess, approvers: Sequence[str]) -> World:
        """The agent's key and the approvers (finance managers), made at once by `gateway` commands."""

        def approver(name: str) -> str:
            created = gateway.cli("users", "create", name, "--role", "finance-managers", "--json")
            return str(json.loads(created.stdout)["key"])

        with ThreadPoolExecutor() as pool:
            agent_key = pool.submit(gateway.create_key, "finance-bot")
            keys = {name: pool.submit(approver, name) for name in approvers}
            return cls(gateway, backend, agent_key.result(), {name: key.result() for name, key in keys.items()})

    async def cli(self, *args: str) -> str:
        """A `gateway` command, run off the event loop so the agent's waiting call goes on meanwhile."""
        done = await anyio.to_thread.run_sync(lambda: self.gateway.cli(*args))
        return done.stdout

    async def decide(self, verb: str, approval_id: str, user: str, *extra: str) -> str:
        return await self.cli("approvals", verb, approval_id, "--user-key", self.approvers[user], *extra)

    async def pending_approval(self) -> str:
        """The id of the one pending approval, once the held call made it."""

        async def listed() -> list[dict[str, Any]]:
            out = await self.cli("approvals", "list", "--state", "pending", "--json")
            return [json.loads(line) for line in out.splitlines()]

        with anyio.fail_after(CALL_DEADLINE):
            while True:
                found = await listed()
                if found:
                    break
                await anyio.sleep(0.1)
        assert len(found) == 1, found
        return str(found[0]["id"])

    def payments_run(self) -> list[dict[str, Any]]:
        """Calls of the payment tool the backend ran and answered, from `gateway audit search`.

        A repeat that collects the stored outcome is on record too, under the decision `hold`;
        the run itself is the one the access policies allowed.
        """
        found = self.gateway.cli(
            "audit", "search", "--json", "--tool", PAY, "--decision", "allow", "--outcome", "ok", "--limit", "100"
        )
        return [json.loads(line) for line in found.stdout.splitlines()]


def sealing_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def approvals_toml(*, key: str | None, poll_interval: float = 0.1) -> str:
    keys = f'sealing_keys = [{{ id = "k1", key = "{key}" }}]\n' if key is not None else ""
    return (
        f"\n[approvals]\n{keys}max_wait = {MAX_WAIT}\npoll_interval = {poll_interval}\n"
        "progress_interval = 0.2\nsweep_interval = 0.2\n"
    )


def configure(
    directory: Path,
    backend: BackendProcess,
    *,
    policy: str,
    database_url: str | None = None,
    extra: str = "",
    key: str | None,
    connector: str = "finance",
    poll_interval: float = 0.1,
) -> GatewayProcess:
    write_gateway_config(
        directory,
        {connector: http_connector(backend.url)},
        database_url=database_url,
        extra=approvals_toml(key=key, poll_interval=poll_interval) + extra,
    )
    approval_dir = directory / "policies" / "approval"
    approval_dir.mkdir(parents=True, exist_ok=True)
    (approval_dir / "payments.cedar").write_text(policy)
    return GatewayProcess(directory, free_port())


@contextmanager
def held_world(
    directory: Path,
    *,
    policy: str | None = None,
    extra: str = "",
    sealed: bool = True,
    approvers: Sequence[str] = ("maria",),
) -> Iterator[World]:
    finance = start_http_backend(FINANCE_SERVER)
    gateway = configure(
        directory, finance, policy=policy or approval_policy(), extra=extra, key=sealing_key() if sealed else None
    )
    try:
        gateway.start()
        yield World.started(gateway, finance, approvers)
    finally:
        gateway.stop()
        finance.stop()


def text_of(result: CallToolResult) -> str:
    return "\n".join(part.text for part in result.content if isinstance(part, TextContent))


def approval_id_in(result: CallToolResult) -> str:
    found = re.search(r"Approval (\S+) needs", text_of(result))
    assert found is not None, text_of(result)
    return found.group(1)


async def pay(client: Client, **kwargs: Any) -> CallToolResult:
    with anyio.fail_after(CALL_DEADLINE):
        return await client.call_tool(PAY, dict(INVOICE), **kwargs)


async def invoice_status(client: Client) -> dict[str, Any]:
    listed = await client.call_tool("finance__list_invoices", {"customer_id": "C-1001"})
    assert not listed.is_error, text_of(listed)
    invoices: list[dict[str, Any]] = json.loads(text_of(listed))["invoices"]
    return invoices[0]


def assert_paid_once(result: CallToolResult) -> str:
    """The backend's payment confirmation; the finance server numbers payments from PAY-5001."""
    assert not result.is_error, text_of(result)
    confirmation = json.loads(text_of(result))
    assert confirmation["invoice_id"] == "INV-2001" and confirmation["invoice_status"] == "paid"
    assert confirmation["payment_id"] == "PAY-5001"
    return str(confirmation["payment_id"])


@pytest.mark.anyio
async def test_a_held_payment_waits_and_runs_once_an_approver_approves(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        answered: list[CallToolResult] = []
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert "Requires approval" in (listed[PAY].description or "")  # the model can plan for the wait
            async with anyio.create_task_group() as group:

                async def agent() -> None:
                    answered.append(await pay(client))

                group.start_soon(agent)
                approval_id = await world.pending_approval()
                assert not answered  # the agent's call is still waiting
                said = await world.decide("approve", approval_id, "maria")
                assert "may now run" in said
            assert_paid_once(answered[0])
            invoice = await invoice_status(client)
            assert invoice["status"] == "paid" and invoice["payment_id"] == "PAY-5001"
        ran = world.payments_run()
        assert len(ran) == 1, ran


@pytest.mark.anyio
async def test_a_waiting_call_hears_progress_naming_its_approvers(tmp_path: Path) -> None:
    with held_world(tmp_path, approvers=()) as world:
        heard: list[str | None] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message)

        async with mcp_client(world.gateway.url, world.agent_key) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(partial(pay, client, progress_callback=progress))
                await eventually(lambda: len(heard) >= 2, timeout=CALL_DEADLINE, what="progress while held")
                group.cancel_scope.cancel()  # the agent stops waiting; the call stays held, unrun
            assert (await invoice_status(client))["status"] == "open"
        assert heard[0] is not None and "waiting for approval by role:finance-managers" in heard[0]
        assert "(1 needed), expires" in heard[0]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.anyio
async def test_progress_keeps_a_long_wait_alive_past_the_clients_read_timeout(tmp_path: Path, mode: str) -> None:
    """A held call can wait far longer than an HTTP client waits for a byte (the SDK's streams time out
    after 300 s without one): its progress notifications keep the response moving. Shortened here to 1 s."""
    with held_world(tmp_path) as world:
        heard: list[str | None] = []
        answered: list[CallToolResult] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message)

        headers = {"Authorization": f"Bearer {world.agent_key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=1.0)) as http:
            async with Client(streamable_http_client(world.gateway.url, http_client=http), mode=mode) as client:
                async with anyio.create_task_group() as group:

                    async def agent() -> None:
                        answered.append(await pay(client, progress_callback=progress))

                    group.start_soon(agent)
                    approval_id = await world.pending_approval()
                    # Well past the read timeout: at 0.2 s apart, 10 notifications take 2 s.
                    await eventually(lambda: len(heard) >= 10, timeout=CALL_DEADLINE, what="two seconds of progress")
                    await world.decide("approve", approval_id, "maria")
        assert_paid_once(answered[0])


@pytest.mark.anyio
async def test_a_denied_call_names_the_approver_and_comment_and_never_runs(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            held = await pay(client, meta=NO_WAIT)
            assert held.is_error
            assert "is held for approval and has not run" in text_of(held)
            approval_id = approval_id_in(held)
            assert "role:finance-managers" in text_of(held)
            await world.decide("deny", approval_id, "maria", "--comment", "Wrong vendor account")
            repeated = await pay(client, meta=NO_WAIT)
            assert repeated.is_error
            said = text_of(repeated)
            assert f"approval {approval_id} was denied by maria" in said and "Wrong vendor account" in said
            assert (await invoice_status(client))["status"] == "open"


@pytest.mark.anyio
async def test_a_quorum_of_two_runs_the_call_only_after_the_second_approver(tmp_path: Path) -> None:
    with held_world(tmp_path, policy=approval_policy(quorum=2), approvers=("maria", "li")) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            held = await pay(client, meta=NO_WAIT)
            approval_id = approval_id_in(held)
            assert "needs 2 approval(s)" in text_of(held)
            first = await world.decide("approve", approval_id, "maria")
            assert "1 of 2 approvals; still pending" in first
            again = await world.decide("approve", approval_id, "maria")
            assert "1 of 2 approvals; still pending" in again  # one person counts once
            still = await pay(client, meta=NO_WAIT)
            assert still.is_error and "is held for approval and has not run" in text_of(still)
            assert (await invoice_status(client))["status"] == "open"
            second = await world.decide("approve", approval_id, "li")
            assert "2 of 2 approvals" in second
            assert_paid_once(await pay(client, meta=NO_WAIT))
        assert len(world.payments_run()) == 1


@pytest.mark.anyio
async def test_a_waiting_call_hears_that_its_approval_expired(tmp_path: Path) -> None:
    with held_world(tmp_path, policy=approval_policy(expires="PT2S"), approvers=()) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            started = anyio.current_time()
            expired = await pay(client)
            waited = anyio.current_time() - started
            assert expired.is_error
            assert "expired at" in text_of(expired) and "without a decision" in text_of(expired)
            assert 1.5 <= waited < MAX_WAIT
            assert (await invoice_status(client))["status"] == "open"


@pytest.mark.anyio
async def test_a_held_call_survives_a_killed_gateway_and_runs_once_after_approval(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        gateway = world.gateway
        async with mcp_client(gateway.url, world.agent_key) as client:
            approval_id = approval_id_in(await pay(client, meta=NO_WAIT))
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait(10)
        gateway.start()  # the same database, the same configuration
        await world.decide("approve", approval_id, "maria")
        async with mcp_client(gateway.url, world.agent_key) as client:
            collected = await pay(client, meta=NO_WAIT)
            payment = assert_paid_once(collected)
            again = await pay(client, meta=NO_WAIT)
            assert again.content == collected.content and payment in text_of(again)
        assert len(world.payments_run()) == 1
        verified = json.loads(gateway.cli("audit", "verify", "--json").stdout)
        assert verified["ok"] is True, verified


@dataclass
class Receiver:
    """A webhook receiver on the local machine: what it got, with the raw bytes a signature covers."""

    port: int
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/approvals"

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.received]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port())

    async def hook(request: Request) -> Response:
        receiver.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hooks/approvals", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=receiver.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="the webhook receiver to start")
        yield receiver
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.anyio
async def test_approvers_webhook_hears_the_hold_its_escalation_and_the_decision_signed(tmp_path: Path) -> None:
    escalation = '\n@escalate_after("PT1S")\n@escalate_to("role:cfo")'
    with webhook_receiver() as receiver:
        webhook = (
            f'\n[[notifications.webhooks]]\nname = "approvers"\nurl = "{receiver.url}"\nsecret = "{WEBHOOK_SECRET}"\n'
        )
        with held_world(tmp_path, policy=approval_policy(escalation=escalation), extra=webhook) as world:
            async with mcp_client(world.gateway.url, world.agent_key) as client:
                approval_id = approval_id_in(await pay(client, meta=NO_WAIT))
                await eventually(lambda: receiver.events() == ["created"], what="the 'created' message")
                await eventually(lambda: len(receiver.received) >= 2, what="the 'escalated' message")
                await world.decide("approve", approval_id, "maria", "--comment", "Checked with the vendor")
                await eventually(lambda: len(receiver.received) >= 3, what="the 'decided' message")
                assert_paid_once(await pay(client, meta=NO_WAIT))
    assert receiver.events() == ["created", "escalated", "decided"]
    for headers, body in receiver.received:
        verify(WEBHOOK_SECRET, headers.get(SIGNATURE_HEADER.lower()), body)
        message = json.loads(body)
        assert headers[EVENT_HEADER.lower()] == message["event"]
        assert message["approval"]["id"] == approval_id and message["approval"]["tool"] == PAY
        assert message["approval"]["approvers"] == ["role:finance-managers"]
    created, escalated, decided = (json.loads(body)["approval"] for _, body in receiver.received)
    assert created["state"] == "pending" and "INV-2001" in json.dumps(created["arguments"])  # what is asked
    assert escalated["escalate_to"] == ["role:cfo"] and escalated["escalated_at"] is not None
    assert decided["state"] == "approved"
    assert decided["votes"]["cast"][0]["user"] == "maria"
    assert decided["votes"]["cast"][0]["comment"] == "Checked with the vendor"


#: Replicas on PostgreSQL look at a waiting approval this far apart: a test that must see a call go
#: on sooner than that passes only when the decision's signal woke it.
FALLBACK_POLL = 30.0
#: How soon after the decision a woken call has run and answered.
PROMPTLY = 1.5


@contextmanager
def two_replicas(directory: Path, postgres_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess, World]]:
    """Two gateway processes on one PostgreSQL database before one finance server, and the world of the first."""
    finance = start_http_backend(FINANCE_SERVER)
    key = sealing_key()  # replicas share their sealing keys, as they share the database
    replicas = [
        configure(
            directory / name,
            finance,
            policy=approval_policy(),
            database_url=postgres_url,
            extra=f'\n[audit]\nreplica_id = "{name}"\n',
            key=key,
            poll_interval=FALLBACK_POLL,
        )
        for name in ("gw-a", "gw-b")
    ]
    try:
        for replica in replicas:
            replica.start()
        first, second = replicas
        yield first, second, World.started(first, finance, ("maria",))
    finally:
        for replica in replicas:
            replica.stop()
        finance.stop()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_call_waiting_on_one_replica_runs_when_approved_and_the_other_collects_it(
    tmp_path: Path, postgres_url: str
) -> None:
    with two_replicas(tmp_path, postgres_url) as (first, second, world):
        answered: list[tuple[CallToolResult, float]] = []
        joined: list[CallToolResult] = []
        heard_on_b: list[str | None] = []

        async def waiting_on_b(progress: float, total: float | None, message: str | None) -> None:
            heard_on_b.append(message)

        async with (
            mcp_client(first.url, world.agent_key) as client,
            mcp_client(second.url, world.agent_key) as other,
        ):
            async with anyio.create_task_group() as group:

                async def agent() -> None:
                    result = await pay(client)
                    answered.append((result, anyio.current_time()))

                async def retry_on_b() -> None:
                    joined.append(await pay(other, progress_callback=waiting_on_b))

                group.start_soon(agent)
                approval_id = await world.pending_approval()
                # The same call through replica B meanwhile waits on the same approval: the two
                # replicas race to run it once approved, and exactly one does.
                group.start_soon(retry_on_b)
                await eventually(lambda: heard_on_b, what="replica B waiting on the approval")
                # The command line is a process of its own: its signal wakes both replicas.
                await world.decide("approve", approval_id, "maria")
                decided = anyio.current_time()
        result, at = answered[0]
        payment = assert_paid_once(result)
        assert at - decided < PROMPTLY, f"replica A took {at - decided:.2f}s to run the approved call"
        assert joined[0].content == result.content
        async with mcp_client(second.url, world.agent_key) as client:
            collected = await pay(client, meta=NO_WAIT)
        assert collected.content == result.content and payment in text_of(collected)
        assert len(world.payments_run()) == 1


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_call_waiting_on_one_replica_goes_on_at_once_when_approved_through_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    with two_replicas(tmp_path, postgres_url) as (first, second, world):
        answered: list[tuple[CallToolResult, float]] = []
        async with mcp_client(first.url, world.agent_key) as client:
            async with anyio.create_task_group() as group:

                async def agent() -> None:
                    result = await pay(client)
                    answered.append((result, anyio.current_time()))

                group.start_soon(agent)
                approval_id = await world.pending_approval()
                async with httpx2.AsyncClient(timeout=CALL_DEADLINE) as http:
                    decided_on_b = await http.post(
                        f"{second.base_url}/api/v1/approvals/{approval_id}/approve",
                        headers={"Authorization": f"Bearer {world.approvers['maria']}"},
                        json={"comment": "invoice checked"},
                    )
                decided = anyio.current_time()
                assert decided_on_b.status_code == 200, decided_on_b.text
                assert decided_on_b.json()["state"] == "approved"
        result, at = answered[0]
        assert_paid_once(result)
        assert at - decided < PROMPTLY, f"replica A took {at - decided:.2f}s after replica B's decision"
        assert len(world.payments_run()) == 1


@pytest.mark.anyio
async def test_without_a_sealing_key_a_held_call_is_refused_at_once(tmp_path: Path) -> None:
    with held_world(tmp_path, sealed=False, approvers=()) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            started = anyio.current_time()
            refused = await pay(client)
            assert anyio.current_time() - started < MAX_WAIT / 2
            assert refused.is_error
            said = text_of(refused)
            assert "nothing ran" in said and "sealing_keys" in said
            assert (await invoice_status(client))["status"] == "open"


@pytest.mark.anyio
async def test_identical_calls_made_at_once_share_one_approval_and_run_once(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        answers: list[CallToolResult] = []

        async def agent() -> None:
            async with mcp_client(world.gateway.url, world.agent_key) as client:
                answers.append(await pay(client, meta=NO_WAIT))

        async with anyio.create_task_group() as group:
            for _ in range(6):  # a model's parallel tool calls, or a retry racing the first try
                group.start_soon(agent)
        ids = {approval_id_in(answer) for answer in answers}
        assert len(ids) == 1, f"one call held as {len(ids)} approvals: {sorted(ids)}"
        await world.decide("approve", ids.pop(), "maria")
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            assert_paid_once(await pay(client, meta=NO_WAIT))
        assert len(world.payments_run()) == 1


HANG_POLICY = """
@id("hangs-need-a-manager")
@approvers("role:finance-managers")
@quorum("1")
@expires("PT1H")
permit (principal, action == Action::"sink__hang", resource);
"""


@pytest.mark.anyio
async def test_a_call_running_when_its_gateway_is_killed_is_reported_unknown_and_never_rerun(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    started = markers / "payment.started"
    sink = start_http_backend(KITCHEN_SINK, env={"KITCHEN_SINK_MARKERS": str(markers)})
    # A short audit lease: the restarted gateway (a new process, a new replica id) soon takes over the killed one's.
    gateway = configure(
        tmp_path / "gateway",
        sink,
        policy=HANG_POLICY,
        extra="\n[audit]\nlease_seconds = 1\n",
        key=sealing_key(),
        connector="sink",
    )
    hang = {"marker": "payment"}
    try:
        gateway.start()
        world = World.started(gateway, sink, ("maria",))
        async with mcp_client(gateway.url, world.agent_key) as client:
            approval_id = approval_id_in(await client.call_tool("sink__hang", hang, meta=NO_WAIT))
        await world.decide("approve", approval_id, "maria")
        with suppress(Exception):  # the agent's connection dies with the gateway
            async with mcp_client(gateway.url, world.agent_key) as client, anyio.create_task_group() as group:
                group.start_soon(partial(client.call_tool, "sink__hang", hang))
                await eventually(started.exists, what="the approved call to reach the backend")
                started.unlink()
                assert gateway.process is not None
                gateway.process.send_signal(signal.SIGKILL)
                gateway.process.wait(10)
                group.cancel_scope.cancel()
        gateway.start()
        async with mcp_client(gateway.url, world.agent_key) as client:
            with anyio.fail_after(CALL_DEADLINE):
                while True:  # it ran when the gateway died: pending no more once the live gateway knows
                    answer = await client.call_tool("sink__hang", hang, meta=NO_WAIT)
                    if "is held for approval" not in text_of(answer):
                        break
                    await anyio.sleep(0.2)
        assert answer.is_error
        assert f"approval {approval_id}) but the gateway stopped while it ran" in text_of(answer)
        assert "it is not run again" in text_of(answer)
        assert not started.exists()  # the backend was not asked again
        shown = json.loads(gateway.cli("approvals", "show", approval_id, "--json").stdout)
        assert shown["state"] == "unknown"
    finally:
        gateway.stop()
        sink.stop()


#: The approvals API as the identity provider knows it: people's sign-in tokens are issued for it.
PEOPLE_AUDIENCE = "gateway-approvals"


def identity_provider_toml(issuer: LocalIssuer) -> str:
    """Agents' access tokens and people's sign-in tokens from one provider, both naming people alike."""
    return f"""
[[auth.issuers]]
issuer = "{issuer.url}"
audiences = ["{AUDIENCE}"]
user_claim = "preferred_username"

[auth.people]
issuer = "{issuer.url}"
audiences = ["{PEOPLE_AUDIENCE}"]
user_claim = "preferred_username"
roles_claims = ["groups"]
"""


@pytest.mark.anyio
async def test_people_signed_in_with_the_identity_provider_decide_and_agents_tokens_never_do(tmp_path: Path) -> None:
    issuer = LocalIssuer(RSAKey.generate_key(2048, parameters={"kid": "idp-1"}))

    def signed_in(name: str) -> dict[str, str]:
        """A finance manager's sign-in token, as the provider issues it to the approvals client."""
        person = {"aud": PEOPLE_AUDIENCE, "azp": "approvals-console", "sub": f"0b1e-{name}", "preferred_username": name}
        return {"Authorization": f"Bearer {issuer.token(**person, groups=['finance-managers'])}"}

    agent_token = issuer.token(azp="finance-bot", preferred_username="alice")  # acting for alice
    try:
        with held_world(tmp_path, extra=identity_provider_toml(issuer), approvers=()) as world:
            api = f"{world.gateway.base_url}/api/v1/approvals"
            async with mcp_client(world.gateway.url, agent_token) as client, httpx.AsyncClient() as http:
                approval_id = approval_id_in(await pay(client, meta=NO_WAIT))

                as_agent = await http.post(
                    f"{api}/{approval_id}/approve", headers={"Authorization": f"Bearer {agent_token}"}
                )
                assert as_agent.status_code == 401
                assert "this token identifies an agent, not a person" in as_agent.json()["detail"]
                own = await http.post(f"{api}/{approval_id}/approve", headers=signed_in("alice"))
                assert own.status_code == 403 and own.json()["error"] == "SelfApproval"
                at_agents_door = await http.post(
                    world.gateway.url, headers={**MCP_HEADERS, **signed_in("carol")}, json=initialize_request()
                )
                assert at_agents_door.status_code == 401
                assert "this token identifies a person, not an agent" in at_agents_door.json()["error_description"]

                approved = await http.post(f"{api}/{approval_id}/approve", headers=signed_in("carol"))
                assert approved.status_code == 200 and approved.json()["state"] == "approved"
                shown = (await http.get(f"{api}/{approval_id}", headers=signed_in("carol"))).json()
                assert [(vote["user"], vote["roles"]) for vote in shown["votes"]] == [("carol", ["finance-managers"])]
                assert_paid_once(await pay(client, meta=NO_WAIT))
            assert len(world.payments_run()) == 1
    finally:
        issuer.stop()
