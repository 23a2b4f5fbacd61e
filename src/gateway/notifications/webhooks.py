"""Delivering approval messages to webhooks without ever making a call wait for a receiver.

`notify` only appends to a bounded queue: the hold stage must answer the agent whatever a chat
service is doing, so a slow or dead receiver costs at most queued messages (the oldest dropped,
with a warning), never a blocked request. One dispatcher hands each message to every webhook
subscribed to its event; deliveries run concurrently up to a bound, so one hanging receiver does
not hold up the others. Failures a receiver may recover from (timeouts, connection errors, 429,
5xx) are retried with exponential backoff and jitter, honouring `Retry-After`; a 4xx other than
408 and 429 means the message itself is refused, and sending it again would change nothing.

Every attempt's outcome is logged, counted on `gateway.notifications.deliveries` (when the
gateway's counter is handed in) and kept among the recent results `stats()` returns.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Literal, Self

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus
from opentelemetry.metrics import Counter

from gateway.approvals.ids import uuid7
from gateway.approvals.model import Approval, Vote
from gateway.notifications.messages import json_body, slack_body
from gateway.notifications.signing import delivery_headers
from gateway.notifications.tool_messages import ToolNotice, tool_json_body, tool_slack_body
from gateway.settings.notifications import NotificationsSettings, WebhookEvent, WebhookSettings

logger = logging.getLogger("gateway.notifications")

Outcome = Literal["delivered", "retried", "failed"]
#: Bytes of a receiver's answer read before the connection is let go; only its status matters.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One attempt's outcome: `retried` attempts are followed by another, `delivered` and `failed` end a delivery."""

    webhook: str
    event: WebhookEvent
    #: The approval's id, or the exposed tool name of a `tool_quarantined` message.
    approval_id: str
    delivery_id: str
    attempt: int
    outcome: Outcome
    status: int | None
    error: str | None
    time: datetime


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Delivery health: the latest attempts, newest last, and what is waiting or was lost."""

    recent: tuple[DeliveryResult, ...]
    queued: int
    in_flight: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _Message:
    #: What the message is about: a held call's approval, or a quarantined tool.
    approval: Approval | ToolNotice
    event: WebhookEvent
    votes: tuple[Vote, ...]
    occurred_at: datetime

    @property
    def subject(self) -> str:
        return self.approval.subject if isinstance(self.approval, ToolNotice) else self.approval.id

    def body(self, webhook: WebhookSettings) -> bytes:
        if isinstance(self.approval, ToolNotice):
            render_tool = tool_slack_body if webhook.format == "slack" else tool_json_body
            return render_tool(self.approval, self.event, console_url=webhook.console_url)
        render = slack_body if webhook.format == "slack" else json_body
        return render(
            self.approval, self.event, votes=self.votes, console_url=webhook.console_url, occurred_at=self.occurred_at
        )


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None
    error: str | None
    retry_after: float | None

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True
        return self.status in (408, 429) or self.status >= 500


class WebhookNotifier:
    """Owns the HTTP client, the queue and the workers; use as `async with` or run with `task_group.start(run)`.

    `backoff`, `max_backoff` and `max_retry_after` are seconds; the wait before attempt n+1 is
    `min(max_backoff, backoff * 2**(n-1))` scaled by a random factor in [0.5, 1) so receivers that
    came back are not hit by every gateway at once, or what `Retry-After` asks if that is longer
    (capped at `max_retry_after`). Closing waits up to `drain_timeout` for queued and in-flight
    deliveries, then gives up on them, logged.
    """

    def __init__(
        self,
        settings: NotificationsSettings,
        *,
        client: httpx.AsyncClient | None = None,
        queue_size: int = 1000,
        concurrency: int = 16,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 300.0,
        drain_timeout: float = 10.0,
        history: int = 200,
        deliveries: Counter | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if queue_size < 1 or concurrency < 1:
            raise ValueError("queue_size and concurrency must be at least 1")
        self._webhooks = settings.webhooks
        self._client = client
        self._queue: deque[_Message] = deque(maxlen=queue_size)
        self._slots = anyio.Semaphore(concurrency)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._drain_timeout = drain_timeout
        self._recent: deque[DeliveryResult] = deque(maxlen=history)
        self._counter = deliveries
        self._jitter = jitter
        self._wake = anyio.Event()
        self._closing = False
        self._dropped = 0
        self._in_flight = 0
        self._scope: anyio.CancelScope | None = None
        self._host: TaskGroup | None = None

    # -- what callers use ---------------------------------------------------------------------

    def notify(self, approval: Approval, event: WebhookEvent, votes: Sequence[Vote] = ()) -> None:
        """Queue `event` about `approval` for every subscribed webhook; returns at once, whatever receivers do."""
        self._queue_message(_Message(approval, event, tuple(votes), datetime.now(UTC)))

    def notify_tool(self, notice: ToolNotice) -> None:
        """Queue a `tool_quarantined` message; returns at once, like `notify`."""
        self._queue_message(_Message(notice, "tool_quarantined", (), notice.occurred_at))

    def _queue_message(self, message: _Message) -> None:
        event = message.event
        if not any(event in webhook.events for webhook in self._webhooks):
            return
        if self._closing:
            self._drop("the notifier is closing", message.subject, event)
            return
        if len(self._queue) == self._queue.maxlen:
            oldest = self._queue[0]
            self._drop("the queue is full; dropping the oldest message", oldest.subject, oldest.event)
        self._queue.append(message)
        self._wake.set()

    def stats(self) -> DeliveryStats:
        return DeliveryStats(
            recent=tuple(self._recent), queued=len(self._queue), in_flight=self._in_flight, dropped=self._dropped
        )

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        host = anyio.create_task_group()
        await host.__aenter__()
        try:
            await host.start(self._serve)
        except BaseException as error:
            await host.__aexit__(type(error), error, error.__traceback__)
            raise
        self._host = host
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        self._begin_close()
        host, self._host = self._host, None
        assert host is not None, "the notifier was not entered"
        return await host.__aexit__(kind, error, traceback)

    async def drain(self) -> None:
        """Deliver what is queued, within `drain_timeout`, for a process that only queued a few messages."""
        async with self:
            pass

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled, then drain within `drain_timeout`."""
        async with self:
            task_status.started()
            await anyio.sleep_forever()

    def _begin_close(self) -> None:
        """Stop taking messages and give what is queued or in flight `drain_timeout` more seconds."""
        self._closing = True
        self._wake.set()
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, anyio.current_time() + self._drain_timeout)

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        owned = self._client is None
        client = self._client or httpx.AsyncClient(
            follow_redirects=False, limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)
        )
        try:
            # Shielded: the host's cancellation starts the drain (`_begin_close`) instead of cutting
            # deliveries short; the drain deadline set on this scope ends it.
            with anyio.CancelScope(shield=True) as scope:
                self._scope = scope
                task_status.started()
                async with anyio.create_task_group() as deliveries:
                    await self._dispatch(client, deliveries)
        finally:
            self._scope = None
            lost = len(self._queue)
            if lost:
                logger.warning(
                    "notifications: closed with messages undelivered", extra={"messages": lost, "reason": "drain"}
                )
                self._dropped += lost
                self._queue.clear()
            if owned:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    async def _dispatch(self, client: httpx.AsyncClient, deliveries: TaskGroup) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
            message = self._queue.popleft()
            for webhook in self._webhooks:
                if message.event in webhook.events:
                    await self._slots.acquire()
                    self._in_flight += 1
                    deliveries.start_soon(self._deliver, client, webhook, message)

    # -- one delivery ----------------------------------------------------------------------------

    async def _deliver(self, client: httpx.AsyncClient, webhook: WebhookSettings, message: _Message) -> None:
        delivery_id = str(uuid7(datetime.now(UTC)))
        attempt = 0
        try:
            body = message.body(webhook)
            secret = None if webhook.secret is None else webhook.secret.get_secret_value()
            for attempt in range(1, webhook.max_attempts + 1):
                headers = delivery_headers(body=body, event=message.event, delivery_id=delivery_id, secret=secret)
                result = await self._attempt(client, webhook, body, headers)
                if result.status is not None and 200 <= result.status < 300:
                    self._record(webhook, message, delivery_id, attempt, "delivered", result)
                    return
                if not result.retryable or attempt == webhook.max_attempts:
                    self._record(webhook, message, delivery_id, attempt, "failed", result)
                    return
                self._record(webhook, message, delivery_id, attempt, "retried", result)
                await anyio.sleep(self._delay(attempt, result.retry_after))
        except anyio.get_cancelled_exc_class():
            self._record(webhook, message, delivery_id, attempt, "failed", _Attempt(None, "shutdown", None))
            raise
        except Exception as error:  # a bug here must cost one delivery, not the notifier
            logger.exception(
                "notifications: delivery failed unexpectedly",
                extra={"webhook": webhook.name, "event": message.event, "approval_id": message.subject},
            )
            self._record(webhook, message, delivery_id, attempt, "failed", _Attempt(None, repr(error), None))
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def _attempt(
        self, client: httpx.AsyncClient, webhook: WebhookSettings, body: bytes, headers: dict[str, str]
    ) -> _Attempt:
        status: int | None = None
        retry_after: float | None = None
        # The whole attempt is bounded, not each phase: a receiver that trickles bytes is as stuck as a silent one.
        with anyio.move_on_after(webhook.timeout) as deadline:
            try:
                async with client.stream(
                    "POST", webhook.url, content=body, headers=headers, timeout=webhook.timeout
                ) as response:
                    status = response.status_code
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
            except httpx.TimeoutException:
                return _Attempt(None, "timeout", None)
            except httpx.TransportError as error:
                return _Attempt(None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, None)
        if deadline.cancelled_caught and status is None:
            return _Attempt(None, "timeout", None)
        return _Attempt(status, None, retry_after)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        exponential = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        delay = exponential * (0.5 + self._jitter() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_retry_after))
        return delay

    def _record(
        self,
        webhook: WebhookSettings,
        message: _Message,
        delivery_id: str,
        attempt: int,
        outcome: Outcome,
        result: _Attempt,
    ) -> None:
        entry = DeliveryResult(
            webhook=webhook.name,
            event=message.event,
            approval_id=message.subject,
            delivery_id=delivery_id,
            attempt=attempt,
            outcome=outcome,
            status=result.status,
            error=result.error,
            time=datetime.now(UTC),
        )
        self._recent.append(entry)
        if self._counter is not None:
            self._counter.add(1, {"outcome": outcome, "webhook": webhook.name})
        if outcome == "delivered":
            logger.debug("notifications: delivered", extra=_fields(entry))
        elif outcome == "retried":
            logger.warning("notifications: delivery attempt failed; retrying", extra=_fields(entry))
        else:
            logger.error("notifications: delivery failed; giving up", extra=_fields(entry))

    def _drop(self, why: str, approval_id: str, event: WebhookEvent) -> None:
        self._dropped += 1
        logger.warning(f"notifications: {why}", extra={"event": event, "approval_id": approval_id})


def _fields(entry: DeliveryResult) -> dict[str, object]:
    return {
        "webhook": entry.webhook,
        "event": entry.event,
        "approval_id": entry.approval_id,
        "delivery_id": entry.delivery_id,
        "attempt": entry.attempt,
        "status": entry.status,
        "error": entry.error,
    }


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
