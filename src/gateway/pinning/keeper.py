"""What one gateway process does with a backend's listing, and with an admin's acceptance.

For every tool a backend lists (the gateway's own tools excepted):

- never seen, `new_tools = "accept"` (and not held for a flag): pinned, recorded as accepted by
  the gateway, audited (`pinned`);
- never seen, `new_tools = "review"` (or flagged under `hold_flagged`): a `new` review, audited
  (`held`) and logged; withheld until accepted;
- pinned, same digest: served; an open review of it is closed (the backend went back), audited
  (`restored`) and logged;
- pinned, other digest: a `changed` review, which quarantines it on every replica: audited
  (`quarantined`), a `tool_quarantined` webhook and an error log line, once per definition.

Tools that disappear from a listing keep their pins (a backend restarting with fewer tools is
not a change of a pinned tool); ones that come back are compared with them.

Instruction flags (`gateway.catalog.instructions`) are computed for every tool not yet pinned or
with a changed definition, logged once per definition, kept with the review and shown to the
reviewer; they never change what the agent is shown.

Every change is told to the other processes on the `tool_pins` signal (`{"connector": name}`),
and every process also re-reads the tables every `review_poll_seconds`, so an acceptance made
with the CLI on SQLite, or a signal lost, is still followed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import anyio.to_thread

from gateway.audit import AuditRecorder, ToolPinEvent
from gateway.catalog import exposed_name
from gateway.catalog.definitions import definition_digest, pinned_part
from gateway.catalog.instructions import flag_definition
from gateway.catalog.pins import Key, Pin, PinBook, PinState, Review
from gateway.connectors.base import Listing
from gateway.errors import GatewayError, NothingToAccept
from gateway.notifications.tool_messages import ToolNotice
from gateway.pinning.store import PinStore
from gateway.settings.catalog import CatalogSettings
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR

logger = logging.getLogger("gateway.pinning")

#: Who a pin made under `new_tools = "accept"` is recorded as accepted by.
GATEWAY_ACTOR = "gateway (new_tools = accept)"
SIGNAL = "tool_pins"
#: Up to this many tools, a listing's digests are worked out inline; more go to a worker thread.
_INLINE_TOOLS = 256
#: Tool pin events queued for the audit log at a time when a listing pins many tools at once.
_AUDIT_CHUNK = 200


@dataclass(frozen=True, slots=True)
class _Step:
    """What one listed tool needs: restored (its review closed), quarantined, pinned, or held."""

    action: Literal["restore", "quarantine", "pin", "hold"]
    key: Key
    digest: str
    pin: Pin | None = None
    review: Review | None = None
    flags: tuple[Any, ...] = ()
    #: The pinned part of the definition, kept with a pin or a review (empty for a restore).
    part: Mapping[str, Any] = field(default_factory=dict)


class PinKeeper:
    def __init__(
        self,
        store: PinStore,
        book: PinBook,
        settings: CatalogSettings,
        *,
        separator: str,
        recorder: AuditRecorder | None = None,
        notify: Callable[[ToolNotice], None] | None = None,
        publish: Callable[[str, dict[str, object]], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.book = book
        self._settings = settings
        self._separator = separator
        self._recorder = recorder
        self._notify = notify
        self._publish = publish
        #: (connector, tool, digest) whose flags were logged already: a flag is logged once per definition.
        self._logged_flags: set[tuple[str, str, str]] = set()

    def exposed(self, key: Key) -> str:
        return exposed_name(key[0], key[1], self._separator)

    async def load(self) -> bool:
        """Read the pins and reviews; returns whether they differ from what this process had."""
        return self.book.replace(await self.store.read())

    async def observe(self, connector: str, listing: Listing, *, live: bool) -> None:
        """Pin, hold, quarantine or restore the listing's tools; `live` False for a stored listing read at start.

        A stored listing may be older than the backend: it never closes a review (only what the
        backend lists now can show it went back to the pinned definition). Storage failures are
        logged and leave the book as it was: tools already pinned stay served, a new tool under
        `accept` is served and pinned at the next listing.

        Each tool's digest (and, for one not pinned as it is, its flags) is worked out first, in
        a worker thread for a large listing so other requests keep flowing; the tools first seen
        under `accept` are then pinned 500 rows a statement, so a backend listing thousands of new
        tools costs a few commits, not one per tool.
        """
        if connector == GATEWAY_TOOLS_CONNECTOR or not listing.tools:
            return
        try:
            await self.load()
            plan = functools.partial(self._plan, connector, listing.tools, self.book.state)
            steps = plan() if len(listing.tools) <= _INLINE_TOOLS else await anyio.to_thread.run_sync(plan)
            wrote = False
            first_seen = [step for step in steps if step.action == "pin"]
            for step in steps:
                if step.action != "pin":
                    wrote = await self._apply(step, live=live) or wrote
            if first_seen:
                wrote = await self._pin_first_seen(first_seen) or wrote
            if wrote:
                await self.load()
                if self._publish is not None:
                    await self._publish(SIGNAL, {"connector": connector})
        except GatewayError as exc:
            logger.error("tool pins not checked: storage failed", extra={"connector": connector, "error": str(exc)})

    def _plan(self, connector: str, tools: Sequence[Mapping[str, Any]], state: PinState) -> list[_Step]:
        """What each listed tool needs (CPU only, no storage): nothing for one served as pinned."""
        steps: list[_Step] = []
        for definition in tools:
            key: Key = (connector, str(definition["name"]))
            digest = definition_digest(definition)
            pin = state.pins.get(key)
            review = state.reviews.get(key)
            if pin is not None and pin.digest == digest:
                if review is not None:
                    steps.append(_Step("restore", key, digest, review=review))
                continue
            if review is not None and review.digest == digest:
                continue
            flags = flag_definition(definition)
            part = pinned_part(definition)
            action: Literal["quarantine", "pin", "hold"]
            if pin is not None:
                action = "quarantine"
            elif (
                self.book.new_tools(connector) == "accept"
                and not (flags and self._settings.hold_flagged)
                and review is None
            ):
                action = "pin"
            else:
                action = "hold"
            steps.append(_Step(action, key, digest, pin=pin, flags=tuple(flags), part=part))
        return steps

    async def _apply(self, step: _Step, *, live: bool) -> bool:
        """Restore, quarantine or hold one tool; whether the tables changed."""
        key, digest = step.key, step.digest
        if step.action == "restore":
            assert step.review is not None
            if not (live and await self.store.close_review(key, only_digest=step.review.digest)):
                return False
            logger.warning(
                "tool definition restored: its backend lists the accepted definition again",
                extra={"connector": key[0], "tool": self.exposed(key)},
            )
            await self._audit("restored", key, actor="gateway", details={"digest": digest})
            return True
        self._log_flags(key, digest, step.flags)
        flag_details = [flag.sentence() for flag in step.flags]
        if step.action == "quarantine":
            assert step.pin is not None
            if not await self.store.open_review(key, "changed", digest, step.part, step.flags):
                return False
            self._quarantined(key, step.pin, digest, flag_details)
            await self._audit(
                "quarantined",
                key,
                actor="gateway",
                reason="its backend lists a definition other than the accepted one",
                details={"accepted_digest": step.pin.digest, "current_digest": digest, "flags": flag_details},
            )
            return True
        if not await self.store.open_review(key, "new", digest, step.part, step.flags):
            return False
        policy = self.book.new_tools(key[0])
        why = "flagged descriptions are held" if policy == "accept" else "new_tools = review"
        logger.warning(
            "new tool held for review: an admin must accept it (`gateway tools accept`)",
            extra={"connector": key[0], "tool": self.exposed(key), "why": why, "flags": flag_details},
        )
        await self._audit("held", key, actor="gateway", reason=why, details={"digest": digest, "flags": flag_details})
        return True

    async def _pin_first_seen(self, steps: Sequence[_Step]) -> bool:
        """Pin the tools first seen under `accept` in a few statements, and audit the ones this process pinned."""
        for step in steps:
            self._log_flags(step.key, step.digest, step.flags)
        pinned = await self.store.pin_many(
            [(step.key, step.digest, step.part) for step in steps],
            accepted_by=GATEWAY_ACTOR,
            reason="first seen under new_tools = accept",
        )
        if not pinned:
            return False  # another process pinned them first, and audited them
        ours = [step for step in steps if step.key in pinned]
        flagged = [step for step in ours if step.flags]
        if len(ours) > _AUDIT_CHUNK:
            # A listing of thousands of new tools is one event (with every flagged tool on its own),
            # not thousands queued ahead of the calls being recorded meanwhile.
            connector = ours[0].key[0]
            names = [self.exposed(step.key) for step in ours]
            await self._audit(
                "pinned",
                (connector, "*"),
                actor=GATEWAY_ACTOR,
                reason=f"{len(ours)} tools first seen under new_tools = accept",
                details={"count": len(ours), "tools": names[:_AUDIT_CHUNK], "more": max(0, len(names) - _AUDIT_CHUNK)},
            )
            ours = flagged
        await self._audit_many(
            "pinned",
            [(step.key, {"digest": step.digest, "flags": [flag.sentence() for flag in step.flags]}) for step in ours],
            actor=GATEWAY_ACTOR,
        )
        return True

    def _quarantined(self, key: Key, pin: Pin, digest: str, flags: list[str]) -> None:
        exposed = self.exposed(key)
        logger.error(
            f"tool '{exposed}' quarantined: its definition changed since it was accepted; agents cannot see or "
            f"call it until an admin reviews it (`gateway tools diff {exposed}`, `gateway tools accept {exposed}`)",
            extra={"connector": key[0], "tool": exposed, "accepted_digest": pin.digest, "current_digest": digest},
        )
        if self._notify is not None:
            self._notify(
                ToolNotice(
                    connector=key[0],
                    tool=key[1],
                    exposed=exposed,
                    accepted_digest=pin.digest,
                    current_digest=digest,
                    flags=tuple(flags),
                    occurred_at=datetime.now(UTC),
                )
            )

    def _log_flags(self, key: Key, digest: str, flags: tuple[Any, ...]) -> None:
        if not flags or (key[0], key[1], digest) in self._logged_flags:
            return
        self._logged_flags.add((key[0], key[1], digest))
        logger.warning(
            "tool description reads like instructions to the model; shown to reviewers, not rewritten",
            extra={"connector": key[0], "tool": self.exposed(key), "flags": [flag.sentence() for flag in flags]},
        )

    def find(self, name: str) -> Review:
        """The review of a tool named by its exposed name (or `connector/tool`); raises `NothingToAccept`."""
        for key, review in self.book.state.reviews.items():
            if name in (self.exposed(key), f"{key[0]}/{key[1]}"):
                return review
        raise NothingToAccept(
            f"no tool named '{name}' is waiting for review: `gateway tools pending` lists the ones that are "
            "(by exposed name, e.g. crm__search)"
        )

    async def accept(self, name: str, *, actor: str, reason: str) -> Review:
        """Accept the reviewed definition of the tool `name` as its pin; audited, and told to every process."""
        if not reason.strip():
            raise NothingToAccept("give a reason for accepting the tool (--reason): it is kept in the audit log")
        await self.load()
        review = self.find(name)
        key = (review.connector, review.tool)
        accepted, previous = await self.store.accept(key, actor=actor, reason=reason)
        logger.warning(
            "tool definition accepted",
            extra={"connector": key[0], "tool": self.exposed(key), "actor": actor, "digest": accepted.digest},
        )
        await self._audit(
            "accepted",
            key,
            actor=actor,
            reason=reason,
            details={
                "previous_digest": previous.digest if previous is not None else None,
                "digest": accepted.digest,
                "was": accepted.state,
                "flags": [flag.sentence() for flag in accepted.flags],
            },
        )
        await self.load()
        if self._publish is not None:
            await self._publish(SIGNAL, {"connector": key[0]})
        return accepted

    async def _audit(
        self, action: str, key: Key, *, actor: str, reason: str | None = None, details: Mapping[str, Any]
    ) -> None:
        if self._recorder is None:
            return
        try:
            await self._recorder.record_tool_pin_event(
                action,
                connector=key[0],
                tool=key[1],
                exposed=self.exposed(key),
                actor=actor,
                reason=reason,
                details=details,
            )
        except GatewayError as exc:
            logger.error(
                "tool pin event not audited", extra={"action": action, "tool": self.exposed(key), "error": str(exc)}
            )

    async def _audit_many(self, action: str, events: Sequence[tuple[Key, Mapping[str, Any]]], *, actor: str) -> None:
        if self._recorder is None or not events:
            return
        try:
            # In chunks, each written before the next is queued: the calls being recorded meanwhile
            # wait behind one chunk at most, never behind a whole listing of thousands of tools.
            for start in range(0, len(events), _AUDIT_CHUNK):
                await self._recorder.record_tool_pin_events(
                    ToolPinEvent(action, key[0], key[1], self.exposed(key), actor, None, details)
                    for key, details in events[start : start + _AUDIT_CHUNK]
                )
        except GatewayError as exc:
            logger.error(
                "tool pin events not audited", extra={"action": action, "count": len(events), "error": str(exc)}
            )
