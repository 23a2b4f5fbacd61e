"""Bounds on what one backend may list, checked as its listing pages arrive.

A backend decides how much it lists; without bounds, one that lists 50,000 tools or a 20 MB
description makes every later stage (catalog, Cedar schema, policy validation, every agent's
`tools/list`) pay for it. The number of tools and the JSON size of the whole listing are
counted page by page, and fetching stops at the first page that breaks a bound: the listing is
refused whole, because a partial offer would silently lose tools the backend meant to list.
One definition larger than `max_definition_bytes` is only left out (with a problem naming it):
it is the backend's mistake in one tool, and its other tools should keep working.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.connectors.base import JsonObject, Listing
from gateway.errors import ListingRefused
from gateway.settings.connectors import ListingLimits

#: The key each kind of definition is filed under in the catalog, which must be text.
_KEY_OF = {"tool": "name", "prompt": "name", "resource": "uri", "resource template": "uriTemplate"}
_WHERE_TO_RAISE = "in the connector file (or for every connector in [connectors] of gateway.toml)"
_NAME_SHOWN = 80


def definition_bytes(definition: JsonObject) -> int:
    """The size of a definition as JSON, which is what it costs to hold, validate and send on."""
    try:
        return len(orjson.dumps(definition))
    except (orjson.JSONEncodeError, TypeError):  # integers past 64 bits: measured the slow way
        return len(json.dumps(definition, ensure_ascii=False, default=str).encode())


class ListingBudget:
    """What is left of one backend's bounds while its listing is read; one per listing fetch."""

    def __init__(self, connector: str, limits: ListingLimits) -> None:
        self._connector = connector
        self._limits = limits
        self._tools = 0
        self._bytes = 0
        self.problems: list[str] = []

    def take(self, kind: str, items: Any) -> list[JsonObject]:
        """The items of one page within the bounds; raises ListingRefused when the listing breaks one.

        An item without the key the catalog files it under (a tool's or prompt's `name`, a
        resource's `uri`, a template's `uriTemplate`) is left out with a problem, like an oversized one.
        """
        if items is None:
            return []
        if not isinstance(items, list | tuple):
            raise ListingRefused(
                f"backend '{self._connector}' answered its {kind} listing without a list of {kind}s: its new "
                "listing was refused and the last accepted one stays in force. The backend needs fixing."
            )
        limits = self._limits
        if kind == "tool":
            self._tools += len(items)
            if self._tools > limits.max_tools:
                raise ListingRefused(
                    f"backend '{self._connector}' lists more than max_tools = {limits.max_tools} tools "
                    f"({self._tools} read so far): its new listing was refused and the last accepted one stays "
                    f"in force. If the backend really offers that many, raise max_tools {_WHERE_TO_RAISE}."
                )
        kept = []
        for item in items:
            size = definition_bytes(item)
            self._bytes += size
            if self._bytes > limits.max_listing_bytes:
                raise ListingRefused(
                    f"backend '{self._connector}' lists more than max_listing_bytes = {limits.max_listing_bytes} "
                    f"bytes of definitions: its new listing was refused and the last accepted one stays in force. "
                    f"Make the backend list less, or raise max_listing_bytes {_WHERE_TO_RAISE}."
                )
            if not isinstance(item, dict) or not isinstance(item.get(_KEY_OF[kind]), str):
                self.problems.append(
                    f"a {kind} of backend '{self._connector}' has no {_KEY_OF[kind]} (text): it is left out of the "
                    f"catalog. The backend needs fixing: {definition_head(item)}"
                )
                continue
            if size > limits.max_definition_bytes:
                self.problems.append(
                    f"{kind} {_name_of(item)} of backend '{self._connector}' is {size} bytes of JSON, more than "
                    f"max_definition_bytes = {limits.max_definition_bytes}: it is left out of the catalog. Shorten "
                    f"it at the backend, or raise max_definition_bytes {_WHERE_TO_RAISE}."
                )
                continue
            kept.append(item)
        return kept


def bound_listing(connector: str, listing: Listing, limits: ListingLimits) -> tuple[Listing, tuple[str, ...]]:
    """A whole listing (a stored one) within the bounds, and the problems; raises ListingRefused like `take`."""
    budget = ListingBudget(connector, limits)
    bounded = Listing(
        tools=tuple(budget.take("tool", listing.tools)),
        resources=tuple(budget.take("resource", listing.resources)),
        resource_templates=tuple(budget.take("resource template", listing.resource_templates)),
        prompts=tuple(budget.take("prompt", listing.prompts)),
        capabilities=listing.capabilities,
    )
    return bounded, tuple(budget.problems)


def definition_head(item: Any) -> str:
    """The start of a definition's JSON, enough to find it at the backend."""
    try:
        text = orjson.dumps(item, default=str).decode()
    except orjson.JSONEncodeError:
        text = repr(item)
    return text[:_NAME_SHOWN] + ("..." if len(text) > _NAME_SHOWN else "")


def _name_of(item: JsonObject) -> str:
    found = item.get("name") or item.get("uri") or item.get("uriTemplate") if isinstance(item, dict) else None
    text = str(found or "(unnamed)")
    return repr(text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "...")
