"""Waking the requests that wait on an approval the moment it changes, whichever process changed it.

A held call's request waits for its approval to leave `pending` (or `executing`, while another
request runs it). The change may be committed anywhere: by this process (a vote through its API,
a run it finished, an expiry), by another replica or worker, or by the `gateway approvals`
command. Each waiting request holds a `Waiter` for its approval's id, and every change of that
approval rings it:

- committed by this process: the store's change listener (`ApprovalWakeups.changed`) rings the
  waiters here at once, and queues a signal on the channel `approval_changed` (payload
  `{"id": approval_id, "state": state}`) for the other processes;
- committed by another process: that signal, received (`run`), rings the waiters here.

Signals are best effort (one published while a process reconnects to PostgreSQL is lost to it),
so a ring is a prompt to look now, never the only way to learn: a waiting request also looks at
its approval every `[approvals] poll_interval` seconds. On SQLite, signals never leave their
process: a gateway hears its own changes at once, and a decision taken by the `gateway approvals`
command, a process of its own, when it next looks.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.abc

from gateway.approvals.model import Approval
from gateway.approvals.store import ApprovalStore
from gateway.errors import GatewayError
from gateway.signals import Signals

logger = logging.getLogger(__name__)

#: The signal channel of committed approval changes.
CHANNEL = "approval_changed"
#: Changes waiting to be signalled; past this many (the database unreachable for long) the newest are dropped.
MAX_QUEUED = 1000


class Waiter:
    """One waiting request's bell: rung by each change of its approval while the request waits."""

    def __init__(self) -> None:
        self._rung = anyio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a ring; whether it rang. A ring since the last wait counts at once."""
        if seconds > 0 and not self._rung.is_set():
            with anyio.move_on_after(seconds):
                await self._rung.wait()
        rung = self._rung.is_set()
        if rung:
            self._rung = anyio.Event()
        return rung


class ApprovalWakeups:
    """The waiters of this process by approval id, rung by local changes and by other processes' signals.

    With `store`, it listens to the store's committed changes. With `signals`, those changes are
    also signalled to the other processes (while `run` runs, or by `flush`), and `run` rings
    the waiters here for theirs; without, it only wakes this process's requests for its own changes.
    """

    def __init__(self, store: ApprovalStore | None, signals: Signals | None = None) -> None:
        self._signals = signals
        self._waiters: dict[str, set[Waiter]] = {}
        self._queue: deque[dict[str, str]] = deque()
        self._queued = anyio.Event()
        if store is not None:
            store.listen(self.changed)

    @property
    def pending(self) -> int:
        """Changes committed here whose signal has not been sent yet."""
        return len(self._queue)

    def changed(self, approval: Approval) -> None:
        """The store's listener: ring this process's waiters, and queue the signal for the others."""
        self.wake(approval.id)
        if self._signals is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            logger.warning(
                "approval change not signalled: too many queued; other processes find it when they next look",
                extra={"approval_id": approval.id},
            )
            return
        payload = {"id": approval.id, "state": approval.state.value}
        if not self._queue or self._queue[-1] != payload:  # one change heard twice (a vote that decides) is sent once
            self._queue.append(payload)
            self._queued.set()

    def wake(self, approval_id: str) -> None:
        """Ring every request of this process waiting on `approval_id`."""
        for waiter in tuple(self._waiters.get(approval_id, ())):
            waiter.ring()

    @contextmanager
    def waiting(self, approval_id: str) -> Iterator[Waiter]:
        """A waiter rung by every change of `approval_id` from now until the block ends."""
        waiter = Waiter()
        self._waiters.setdefault(approval_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(approval_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[approval_id]

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Signal this process's changes and ring for the other processes'; started once subscribed, until cancelled."""
        if self._signals is None:
            raise RuntimeError("approval wakeups without signals have nothing to run")
        async with self._signals.subscribe(CHANNEL) as subscription, anyio.create_task_group() as tasks:
            tasks.start_soon(self._send_queued)
            task_status.started()
            async for signal in subscription:
                if signal.local:
                    continue  # rung here when it was committed
                approval_id = signal.payload.get("id")
                if isinstance(approval_id, str):
                    self.wake(approval_id)

    async def flush(self) -> None:
        """Signal every queued change now (the signals' broker running): for a command about to exit."""
        if self._signals is None:
            return
        while self._queue:
            payload = self._queue.popleft()
            try:
                await self._signals.publish(CHANNEL, payload)
            except GatewayError as exc:
                # Other processes find the change when they next look at the approval.
                logger.warning(
                    "approval change not signalled to other processes",
                    extra={"approval_id": payload["id"], "error": str(exc)},
                )

    async def _send_queued(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = anyio.Event()
            await self.flush()
