"""The pins and reviews one process knows, and what they make of a tool the backend lists.

A pin is the definition of a backend's tool an admin accepted (or the gateway accepted on first
sight, under `new_tools = "accept"`). A review is a tool withheld until an admin accepts it:
`changed` (its definition is not the pinned one: quarantined) or `new` (never accepted, under
`new_tools = "review"` or `hold_flagged`). Both live in the database (`gateway.pinning`); this
book is the process's copy, replaced whole when they change, and read by the catalog on every
listing. It holds no connection and does no I/O, so the catalog stays a pure function of its
inputs.

The verdict of a listed tool, in order:

1. a `changed` review: quarantined, whatever this process's listing says (another replica saw
   the change first; this one's backend may not have re-listed yet);
2. a pin with the same digest: served;
3. a pin with another digest: quarantined (the keeper opens the review);
4. a `new` review, or no pin under `review`: held;
5. otherwise (no pin yet under `accept`): served, the keeper pins it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.catalog.instructions import Flag

Key = tuple[str, str]


class Verdict(StrEnum):
    SERVED = "served"
    #: Changed since its pin: withheld, calls refused, until an admin accepts the new definition.
    QUARANTINED = "quarantined"
    #: Never accepted: withheld until an admin accepts it.
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Pin:
    connector: str
    tool: str
    digest: str
    definition: Mapping[str, Any]
    accepted_by: str
    accepted_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class Review:
    connector: str
    tool: str
    #: `changed` or `new`.
    state: str
    digest: str
    definition: Mapping[str, Any]
    flags: tuple[Flag, ...]
    seen_at: datetime

    @property
    def verdict(self) -> Verdict:
        return Verdict.QUARANTINED if self.state == "changed" else Verdict.HELD


@dataclass(frozen=True, slots=True)
class PinState:
    """Every pin and review, as last read from the database."""

    pins: Mapping[Key, Pin] = field(default_factory=dict)
    reviews: Mapping[Key, Review] = field(default_factory=dict)


class PinBook:
    """The process's copy of the pins and reviews; `new_tools(connector)` is "accept" or "review"."""

    def __init__(self, new_tools: Callable[[str], str]) -> None:
        self._new_tools = new_tools
        self.state = PinState()
        #: Off until the process has read the pins from storage: a catalog without storage (the CLI's
        #: live look at the backends) serves every tool as listed.
        self.enabled = False

    def replace(self, state: PinState) -> bool:
        """Take a fresh read; returns whether it differs from the one held."""
        changed = state != self.state
        self.state = state
        return changed

    def new_tools(self, connector: str) -> str:
        return self._new_tools(connector)

    def verdict(self, connector: str, tool: str, digest: str) -> Verdict:
        if not self.enabled:
            return Verdict.SERVED
        key = (connector, tool)
        review = self.state.reviews.get(key)
        if review is not None and review.state == "changed":
            return Verdict.QUARANTINED
        pin = self.state.pins.get(key)
        if pin is not None:
            return Verdict.SERVED if pin.digest == digest else Verdict.QUARANTINED
        if review is not None or self._new_tools(connector) == "review":
            return Verdict.HELD
        return Verdict.SERVED
