"""Cedar access policies: schema from the live catalog, typed context, fail-closed decisions.

`PolicyEngine` is the one entry point the pipeline and the CLI use; `Decision` is what it
returns. See `policies/README.md` for the model policies are written against.
"""

from gateway.policy.context import ArgumentLimits
from gateway.policy.decision import Decision, Effect, PolicyRef
from gateway.policy.engine import PolicyEngine, PolicyStatus

__all__ = ["ArgumentLimits", "Decision", "Effect", "PolicyEngine", "PolicyRef", "PolicyStatus"]
