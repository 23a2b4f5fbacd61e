"""The suspended agents as this process knows them: what every request is checked against, in memory.

Every request of every agent passes `SuspendedAgents.of(agent)`, a dictionary lookup (0.1 to
0.2 µs with the method call, measured on a busy 2-core machine), so the kill switch costs nothing
measurable on the hot path and needs no query per call.
The dictionary is replaced whole, never changed in place, from the database:

- at once when a signal on `agent_suspensions` arrives: from this process (the console) or from
  another replica or the `gateway agents` command on PostgreSQL;
- every `poll_interval` seconds (at most one) otherwise: the fallback for a signal lost while a
  process reconnected, and the only way on SQLite, where a command is a process of its own and
  signals never leave their process.

So a suspension reaches every process within a signal's delivery, and within `poll_interval` at
worst. While the database cannot be read, the last set read stays in force (a suspended agent
stays refused), and the failure is logged once until a read succeeds again.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc
from sqlalchemy.exc import SQLAlchemyError

from gateway.coordination.suspensions import CHANNEL, Suspension, SuspensionStore
from gateway.errors import GatewayError
from gateway.signals import Signals

logger = logging.getLogger(__name__)


class SuspendedAgents:
    """The suspensions in force by agent; empty, and never refreshed, without a store."""

    def __init__(
        self, store: SuspensionStore | None = None, signals: Signals | None = None, *, poll_interval: float = 0.5
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._store = store
        self._signals = signals
        self._poll_interval = poll_interval
        self._by_agent: dict[str, Suspension] = {}
        self._failing = False
        #: How many reads of the database changed nothing or something; for tests and logs.
        self.refreshes = 0

    def of(self, agent: str) -> Suspension | None:
        """The suspension of `agent` in force, or None: the hot path's one check."""
        return self._by_agent.get(agent)

    def all(self) -> tuple[Suspension, ...]:
        return tuple(self._by_agent.values())

    async def refresh(self) -> None:
        """Read the suspensions in force now; raises what the database raises."""
        if self._store is None:
            return
        found = {suspension.agent: suspension for suspension in await self._store.active()}
        for agent in found.keys() - self._by_agent.keys():
            logger.warning(
                "agent suspended: its requests are refused", extra={"agent": agent, "by": found[agent].suspended_by}
            )
        for agent in self._by_agent.keys() - found.keys():
            logger.info("agent resumed: its requests are served again", extra={"agent": agent})
        self._by_agent = found
        self.refreshes += 1

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the set current until cancelled; started once read (or found unreadable) and subscribed.

        Read before it reports started, so a gateway refuses a suspended agent from its first request.
        """
        await self._refresh_logged()
        if self._signals is None:
            task_status.started()
            while True:
                await anyio.sleep(self._poll_interval)
                await self._refresh_logged()
        async with self._signals.subscribe(CHANNEL) as subscription:
            task_status.started()
            while True:
                with anyio.move_on_after(self._poll_interval):
                    await subscription.get()
                await self._refresh_logged()

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except (GatewayError, SQLAlchemyError) as exc:
            if not self._failing:
                logger.warning(
                    "cannot read the suspended agents; the last ones read stay suspended",
                    extra={"error": str(exc), "suspended": sorted(self._by_agent)},
                )
            self._failing = True
            return
        if self._failing:
            logger.info("suspended agents readable again", extra={"suspended": sorted(self._by_agent)})
        self._failing = False
