"""Cedar access policies: schema from the live catalog, typed context, fail-closed decisions.

`PolicyEngine` is what the gateway holds: its `store` loads the policy files and reports their
status, its `decisions` answer each request with a `Decision`, and each allowed tool call with
a `HoldDecision` from the approval policies (whether people must approve it first). See `policies/README.md` for
the model policies are written against.
"""

from gateway.policy.context import ArgumentLimits
from gateway.policy.decision import Decision, Effect, PolicyRef
from gateway.policy.decisions import PolicyDecisions
from gateway.policy.engine import PolicyEngine
from gateway.policy.hold import ApprovalContext, HoldDecision, Requirement
from gateway.policy.store import PolicyStatus, PolicyStore

__all__ = [
    "ApprovalContext",
    "ArgumentLimits",
    "Decision",
    "Effect",
    "HoldDecision",
    "PolicyDecisions",
    "PolicyEngine",
    "PolicyRef",
    "PolicyStatus",
    "PolicyStore",
    "Requirement",
]
