"""A tool call's Cedar request, built once by its access decision and reused for its hold.

An allowed tool call is decided by the access policies, then by the approval policies (must
people approve it first?). Both see the same principal, action, resource and context, so the
access decision keeps what it built (the arguments converted by the tool's schema, the agent's
ancestors, the context written out as JSON) in a `PreparedCall` on the `Decision`. Cedar
evaluates both sets on it at once when it can (see `joint.py`); when it could not,
`decide_hold` evaluates the approval policies on it instead of building it all again.

The context goes to Cedar as JSON text. Each top-level attribute is written once, when the
first evaluation that reads it needs it, and each evaluation joins the attributes its policies
read (see `Slice.context_keys`). The text is what `json.dumps` makes of the same attributes, so
Cedar is given exactly what it was given before this existed.

A prepared call names the loaded set it was built on only weakly: a decision lives as long as
its request (a held call waits up to a minute), and a reload meanwhile must not keep the
previous set alive for it. On another set, or for another call, it is not used at all.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.calls import Call
from gateway.catalog import ToolEntry
from gateway.policy.slices import ScopeTarget

if TYPE_CHECKING:
    from gateway.policy.store import PolicyState


@dataclass(frozen=True, slots=True, eq=False)
class PreparedCall:
    """One tool call as Cedar sees it: the request's entities, their ancestries and the typed context."""

    call: Call
    tool: ToolEntry
    state: weakref.ref[PolicyState]
    #: `principal`, `action` and `resource` of the Cedar request, in Cedar's JSON form.
    uids: Mapping[str, Mapping[str, str]]
    principal_target: ScopeTarget
    resource_target: ScopeTarget
    context: Mapping[str, Any]
    #: `"key": value` text of each top-level context attribute written so far.
    _texts: dict[str, str] = field(default_factory=dict)

    def built_for(self, state: PolicyState, call: Call, tool: ToolEntry) -> bool:
        """Whether this is the request of `call` to `tool` on `state` (else it must be built again)."""
        return self.call is call and self.tool is tool and self.state() is state

    def request(self, context_keys: frozenset[str] | None) -> dict[str, Any]:
        """The Cedar request, with only the context attributes in `context_keys` (all of them for None)."""
        return {**self.uids, "context": self.context_json(context_keys)}

    def context_json(self, keys: frozenset[str] | None) -> str:
        """`json.dumps` of the context narrowed to `keys`, writing each attribute only once per call."""
        texts = self._texts
        parts = []
        for key, value in self.context.items():
            if keys is not None and key not in keys:
                continue
            text = texts.get(key)
            if text is None:
                text = texts[key] = _member(key) + json.dumps(value)
            parts.append(text)
        return "{" + ", ".join(parts) + "}"


@functools.cache
def _member(key: str) -> str:
    """`"key": ` as `json.dumps` writes it; the keys are the context's own few names, never an agent's."""
    return json.dumps(key) + ": "
