"""One tool call explained: the access decision, whether the agent is shown the tool, and the hold.

`gateway policy explain` and the console's explain page answer the same question for people
writing policies; both call `explain_call`, so they cannot drift apart: what one says, the other
says, word for word (`Explanation.text`). It decides with the engine's set in force as given;
loading it is the caller's business (the CLI loads the files, the console uses the running set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.calls import Call, Origin, RateCounts, Target, WorkflowState
from gateway.catalog.entries import ToolEntry
from gateway.identity.principal import Principal
from gateway.policy.decision import Decision
from gateway.policy.engine import PolicyEngine
from gateway.policy.hold import HoldDecision


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the gateway would do with one tool call, and the policies behind each part."""

    decision: Decision
    #: Whether the tool is in this agent's tools/list (it may still be denied for these arguments).
    listed: bool
    #: The approval policies' answer; None when the call is denied or no approval policy is loaded.
    hold: HoldDecision | None

    @property
    def outcome(self) -> str:
        """allow, deny or hold: what the gateway would do with the call."""
        if not self.decision.allowed:
            return "deny"
        return "hold" if self.hold is not None and self.hold.held else "allow"

    def text(self) -> str:
        """The explanation as `gateway policy explain` prints it."""
        lines = [self.decision.explain(), f"  tool listed for this agent: {'yes' if self.listed else 'no'}"]
        if self.hold is not None:
            lines.append(self.hold.explain())
        return "\n".join(lines)


def explain_call(
    engine: PolicyEngine,
    tool: ToolEntry,
    principal: Principal,
    arguments: Mapping[str, Any] | Any,
    *,
    reasoning: str | None = None,
    rate: RateCounts | None = None,
    workflow: str | None = None,
    workflow_state: WorkflowState | None = None,
) -> Explanation:
    """Decide a call of `tool` by `principal` with `arguments` as the pipeline would, without running it.

    `rate` is the agent's recent calls the policies see (`context.rate`); without it, this call alone.
    `workflow` and `workflow_state` are what `context.workflow` shows (its id, the tools that
    succeeded in it and its agents); without them, a call in no workflow.
    """
    origin = Origin(principal)
    call = Call(
        "tools/call",
        origin,
        tool.exposed,
        arguments,
        reasoning=reasoning,
        target=Target(tool.connector, tool.original),
        rate=rate,
        workflow=workflow,
        workflow_state=workflow_state,
    )
    decision = engine.decisions.decide_call(call, tool)
    listed = bool(engine.decisions.visible_tools(origin, (tool,)))
    hold = (
        engine.decisions.decide_hold(call, tool, decision=decision)
        if decision.allowed and engine.store.status.approval_count
        else None
    )
    return Explanation(decision, listed, hold)
