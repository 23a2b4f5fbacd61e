"""Approval webhooks against real HTTP receivers: signed, retried as the receiver's answer says, never blocking.

Each receiver is a small Starlette app under uvicorn on a free local port that answers from a
script per path (`200`, `500`, `429/1` = 429 with `Retry-After: 1`, `hang`) and keeps what it got.
Waits are on what the receiver or the notifier has seen, never on guessed durations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson
import pytest
import uvicorn
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.approvals.model import Approval, ApprovalState, Vote
from gateway.notifications import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    WebhookNotifier,
    sign,
    verify,
)
from gateway.notifications.messages import MAX_ARGUMENTS_CHARS
from gateway.settings.notifications import NotificationsSettings, WebhookSettings
from gateway.telemetry.instruments import create_instruments
from harness import eventually, free_port

pytestmark = pytest.mark.anyio

SECRET = "whsec-0123456789abcdef"
FAST = {"backoff": 0.01, "max_backoff": 0.05}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    port: int
    scripts: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [entry for entry in self.received if entry.path == path]

    async def answer(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.received.append(Received(path, dict(request.headers), body, time.monotonic()))
        script = self.scripts.get(path, ["200"])
        step = script.pop(0) if len(script) > 1 else script[0]
        if step == "hang":
            await self.release.wait()
            return Response(status_code=200)
        status, _, retry_after = step.partition("/")
        return Response(status_code=int(status), headers={"Retry-After": retry_after} if retry_after else None)


@asynccontextmanager
async def receiver(**scripts: list[str]) -> AsyncIterator[Receiver]:
    port = free_port()
    state = Receiver(port, {f"/{name}": list(script) for name, script in scripts.items()})
    app = Starlette(routes=[Route("/{name}", state.answer, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(server.serve)
        await eventually(lambda: server.started, timeout=10, what="the receiver to start")
        try:
            yield state
        finally:
            state.release.set()
            server.should_exit = True


def approval(approval_id: str = "0192f5a0-0000-7000-8000-000000000001", **changes: Any) -> Approval:
    created = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": approval_id,
        "agent": "billing-bot",
        "user": "alice",
        "roles": ("finance",),
        "tool": "payments__refund",
        "connector": "payments",
        "original_tool": "refund",
        "arguments_digest": "sha256:abc",
        "redacted_arguments": {"amount": 1200, "card": "[redacted]"},
        "sealed_arguments": b"SEALED-EXACT-ARGUMENTS",
        "reasoning": "customer asked",
        "workflow": None,
        "session_id": None,
        "policy_ids": ("refunds-over-1000",),
        "reasons": ("refunds over 1000 need finance approval",),
        "approvers": ("role:finance-leads", "user:bob"),
        "quorum": 2,
        "state": ApprovalState.PENDING,
        "created_at": created,
        "expires_at": created + timedelta(hours=1),
        "escalate_at": None,
        "escalate_to": (),
        "escalated_at": None,
        "policy_version": None,
        "decided_at": None,
        "executed_at": None,
        "executor": None,
        "finished_at": None,
        "result": None,
        "result_truncated": False,
        "version": 1,
    }
    values.update(changes)
    return Approval(**values)


def webhook(url: str, **values: Any) -> WebhookSettings:
    values.setdefault("name", url.rsplit("/", 1)[-1])
    if values.get("format", "json") == "json":
        values.setdefault("secret", SECRET)
    return WebhookSettings(url=url, **values)


def settings(*webhooks: WebhookSettings) -> NotificationsSettings:
    return NotificationsSettings(webhooks=webhooks)


def outcomes(notifier: WebhookNotifier, name: str) -> list[tuple[str, int | None, str | None]]:
    return [(r.outcome, r.status, r.error) for r in notifier.stats().recent if r.webhook == name]


async def test_a_delivery_is_signed_and_carries_the_documented_json() -> None:
    async with receiver() as server:
        hook = webhook(server.url("/approvers"), console_url="https://gw.example.com/")
        vote = Vote("bob", ("finance-leads",), True, "fine by me", datetime(2026, 12, 5, 10, 5, tzinfo=UTC))
        async with WebhookNotifier(settings(hook)) as notifier:
            notifier.notify(approval(), "created", votes=[vote])
        # Leaving the block drained the queue: the message is there without waiting for it.
        [got] = server.at("/approvers")

    assert got.headers[EVENT_HEADER.lower()] == "created"
    assert got.headers[DELIVERY_HEADER.lower()]
    assert got.headers["content-type"] == "application/json"
    signed_at = verify(SECRET, got.headers[SIGNATURE_HEADER.lower()], got.body)
    assert abs(signed_at - time.time()) < 60
    assert b"SEALED-EXACT-ARGUMENTS" not in got.body and b"customer asked" not in got.body
    message = orjson.loads(got.body)
    assert message["event"] == "created"
    assert message["occurred_at"]
    assert message["approval"] == {
        "id": "0192f5a0-0000-7000-8000-000000000001",
        "state": "pending",
        "version": 1,
        "agent": "billing-bot",
        "user": "alice",
        "tool": "payments__refund",
        "connector": "payments",
        "original_tool": "refund",
        "reasons": ["refunds over 1000 need finance approval"],
        "policy_ids": ["refunds-over-1000"],
        "approvers": ["role:finance-leads", "user:bob"],
        "escalate_to": [],
        "quorum": 2,
        "votes": {
            "approve": 1,
            "deny": 0,
            "cast": [{"user": "bob", "approve": True, "comment": "fine by me", "time": "2026-12-05T10:05:00+00:00"}],
        },
        "created_at": "2026-12-05T10:00:00+00:00",
        "expires_at": "2026-12-05T11:00:00+00:00",
        "escalate_at": None,
        "escalated_at": None,
        "decided_at": None,
        "arguments": {"amount": 1200, "card": "[redacted]"},
        "arguments_truncated": False,
        "link": "https://gw.example.com/ui/approvals/0192f5a0-0000-7000-8000-000000000001",
        "kind": "call",
        "question": None,
        "answer": None,
    }
    assert [r.outcome for r in notifier.stats().recent] == ["delivered"]


async def test_large_arguments_are_cut() -> None:
    async with receiver() as server:
        async with WebhookNotifier(settings(webhook(server.url("/big")))) as notifier:
            notifier.notify(approval(redacted_arguments={"text": "x" * 10_000}), "created")
        [got] = server.at("/big")
    body = orjson.loads(got.body)["approval"]
    assert body["arguments_truncated"] is True
    assert isinstance(body["arguments"], str) and len(body["arguments"]) == MAX_ARGUMENTS_CHARS


async def test_the_slack_format_has_text_blocks_and_a_link_button() -> None:
    async with receiver() as server:
        hook = webhook(server.url("/slack"), format="slack", console_url="https://gw.example.com")
        async with WebhookNotifier(settings(hook)) as notifier:
            notifier.notify(approval(agent="<!channel> bot"), "escalated")
        [got] = server.at("/slack")

    assert SIGNATURE_HEADER.lower() not in got.headers  # no secret configured: Slack URLs are their own secret
    message = orjson.loads(got.body)
    assert message["text"].startswith("Approval escalated: &lt;!channel&gt; bot (for alice) wants to call")
    assert "`payments__refund` on `payments`" in message["text"]
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "actions"
    [button] = message["blocks"][-1]["elements"]
    assert button["url"] == "https://gw.example.com/ui/approvals/0192f5a0-0000-7000-8000-000000000001"
    fields = " ".join(item["text"] for item in message["blocks"][2]["fields"])
    assert "0 of 2 approvals" in fields and "role:finance-leads, user:bob" in fields
    assert b"SEALED-EXACT-ARGUMENTS" not in got.body


async def test_server_errors_are_retried_under_one_delivery_id_and_counted() -> None:
    reader = InMemoryMetricReader()
    counter = create_instruments(MeterProvider(metric_readers=[reader]).get_meter("test")).notification_deliveries
    async with receiver(flaky=["500", "503", "200"]) as server:
        async with WebhookNotifier(settings(webhook(server.url("/flaky"))), deliveries=counter, **FAST) as notifier:
            notifier.notify(approval(), "created")
            await eventually(lambda: outcomes(notifier, "flaky")[-1:] == [("delivered", 200, None)], timeout=10)
        attempts = server.at("/flaky")

    assert outcomes(notifier, "flaky") == [("retried", 500, None), ("retried", 503, None), ("delivered", 200, None)]
    assert len(attempts) == 3
    assert len({entry.headers[DELIVERY_HEADER.lower()] for entry in attempts}) == 1
    assert len({entry.body for entry in attempts}) == 1
    for entry in attempts:  # each attempt is signed afresh, and each signature holds
        verify(SECRET, entry.headers[SIGNATURE_HEADER.lower()], entry.body)
    counted = {
        point.attributes["outcome"]: point.value
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "gateway.notifications.deliveries"
        for point in metric.data.data_points
    }
    assert counted == {"retried": 2, "delivered": 1}


async def test_a_hanging_receiver_is_timed_out_and_retried_without_holding_up_anything() -> None:
    async with receiver(stuck=["hang"]) as server:
        hooks = settings(webhook(server.url("/stuck"), timeout=0.3, max_attempts=2), webhook(server.url("/healthy")))
        async with WebhookNotifier(hooks, **FAST) as notifier:
            started = time.monotonic()
            notifier.notify(approval(), "created")
            assert time.monotonic() - started < 0.05
            await eventually(lambda: server.at("/healthy"), timeout=10, what="the healthy receiver's delivery")
            assert outcomes(notifier, "stuck") == []  # still waiting on the stuck one, yet the other got through
            await eventually(lambda: outcomes(notifier, "stuck")[-1:] == [("failed", None, "timeout")], timeout=10)

    assert outcomes(notifier, "stuck") == [("retried", None, "timeout"), ("failed", None, "timeout")]
    assert len(server.at("/stuck")) == 2
    assert outcomes(notifier, "healthy") == [("delivered", 200, None)]


async def test_a_client_error_is_not_retried_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with receiver(refuses=["400", "200"]) as server:
        async with WebhookNotifier(settings(webhook(server.url("/refuses"))), **FAST) as notifier:
            notifier.notify(approval(), "created")
            await eventually(lambda: outcomes(notifier, "refuses"), timeout=10)
        assert len(server.at("/refuses")) == 1
    assert outcomes(notifier, "refuses") == [("failed", 400, None)]
    [record] = [r for r in caplog.records if r.name == "gateway.notifications"]
    assert record.levelname == "ERROR"
    assert (record.webhook, record.event, record.approval_id, record.attempt, record.status) == (
        "refuses",
        "created",
        "0192f5a0-0000-7000-8000-000000000001",
        1,
        400,
    )


async def test_retry_after_is_respected() -> None:
    async with receiver(busy=["429/1", "200"]) as server:
        async with WebhookNotifier(settings(webhook(server.url("/busy"))), **FAST) as notifier:
            notifier.notify(approval(), "created")
            await eventually(lambda: outcomes(notifier, "busy")[-1:] == [("delivered", 200, None)], timeout=10)
        first, second = server.at("/busy")
    assert second.at - first.at >= 0.9
    assert outcomes(notifier, "busy") == [("retried", 429, None), ("delivered", 200, None)]


async def test_a_full_queue_drops_the_oldest_message(caplog: pytest.LogCaptureFixture) -> None:
    async with receiver() as server:
        notifier = WebhookNotifier(settings(webhook(server.url("/queue"))), queue_size=2)
        for number in range(3):  # not running yet: everything waits in the queue
            notifier.notify(approval(f"approval-{number}"), "created")
        assert (notifier.stats().queued, notifier.stats().dropped) == (2, 1)
        assert "queue is full" in caplog.text
        async with notifier:
            pass
        delivered = [orjson.loads(entry.body)["approval"]["id"] for entry in server.at("/queue")]
    assert sorted(delivered) == ["approval-1", "approval-2"]


async def test_each_webhook_gets_only_the_events_it_subscribed_to() -> None:
    async with receiver() as server:
        hooks = settings(
            webhook(server.url("/new"), events=["created"]),
            webhook(server.url("/outcomes"), events=["decided", "expired"]),
        )
        async with WebhookNotifier(hooks) as notifier:
            notifier.notify(approval(), "escalated")  # nobody asked for it: not even queued
            assert notifier.stats().queued == 0
            notifier.notify(approval(), "created")
            notifier.notify(approval(state=ApprovalState.APPROVED), "decided")
            notifier.notify(approval(state=ApprovalState.EXPIRED), "expired")
        events = {path: [e.headers[EVENT_HEADER.lower()] for e in server.at(path)] for path in ("/new", "/outcomes")}
    assert events["/new"] == ["created"]
    assert sorted(events["/outcomes"]) == ["decided", "expired"]


async def test_closing_waits_for_deliveries_only_so_long() -> None:
    async with receiver(stuck=["hang"]) as server:
        notifier = WebhookNotifier(settings(webhook(server.url("/stuck"), timeout=30)), drain_timeout=0.3)
        async with notifier:
            notifier.notify(approval(), "created")
            await eventually(lambda: server.at("/stuck"), timeout=10)
            started = time.monotonic()
        assert time.monotonic() - started < 5
        assert outcomes(notifier, "stuck") == [("failed", None, "shutdown")]


async def test_run_is_cancelled_like_any_task_and_drains() -> None:
    async with receiver() as server:
        notifier = WebhookNotifier(settings(webhook(server.url("/run"))))
        async with anyio.create_task_group() as task_group:
            await task_group.start(notifier.run)
            notifier.notify(approval(), "decided")
            task_group.cancel_scope.cancel()
        assert len(server.at("/run")) == 1


def test_signatures_refuse_tampering_other_secrets_and_old_times() -> None:
    body = b'{"event":"created"}'
    header = sign(SECRET, body)
    verify(SECRET, header, body)
    verify(SECRET, f"{header},v1={'0' * 64}", body)  # a second (rotated) signature does not hurt
    with pytest.raises(InvalidSignature, match="no v1= value matches"):
        verify(SECRET, header, body + b" ")
    with pytest.raises(InvalidSignature, match="no v1= value matches"):
        verify("another-secret-0123456789", header, body)
    old = sign(SECRET, body, timestamp=int(time.time()) - 600)
    with pytest.raises(InvalidSignature, match="beyond"):
        verify(SECRET, old, body, tolerance=300)
    for broken in (None, "", "t=abc,v1=00", "v1=00", "t=1", "garbage"):
        with pytest.raises(InvalidSignature):
            verify(SECRET, broken, body)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]:8080/x"]
)
def test_settings_accept_https_and_loopback_http(url: str) -> None:
    assert WebhookSettings(name="a", url=url, secret=SECRET).url == url


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"url": "http://hooks.example.com/x"}, "must be an https:// URL"),
        ({"url": "http://10.0.0.5/x"}, "must be an https:// URL"),
        ({"url": "ftp://hooks.example.com/x"}, "must be an https:// URL"),
        ({"format": "teams"}, "format"),
        ({"events": ["created", "approved"]}, "events"),
        ({"events": []}, "events"),
        ({"secret": None}, "needs a `secret`"),
        ({"secret": "short"}, "at least 16"),
        ({"timeout": 0}, "timeout"),
        ({"console_url": "gw.example.com"}, "console_url"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_settings_refuse(values: dict[str, Any], complaint: str) -> None:
    fields: dict[str, Any] = {"name": "a", "url": "https://hooks.example.com/x", "secret": SECRET} | values
    with pytest.raises(ValidationError, match=complaint):
        WebhookSettings(**fields)


def test_settings_defaults_and_names() -> None:
    hook = WebhookSettings(name="a", url="https://hooks.example.com/x", format="slack", events=["expired", "created"])
    assert (hook.events, hook.timeout, hook.max_attempts, hook.secret) == (("created", "expired"), 5.0, 5, None)
    assert WebhookSettings(name="a", url="https://h.example.com", secret=SECRET).events == (
        "created",
        "escalated",
        "decided",
        "expired",
        "tool_quarantined",
    )
    with pytest.raises(ValidationError, match="two webhooks are named"):
        NotificationsSettings(webhooks=(hook, hook))
