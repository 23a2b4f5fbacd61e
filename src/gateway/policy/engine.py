"""The access policies as the gateway holds them: the store that loads them, and the decisions read from it.

Loading and deciding change for different reasons and run on different paths: a load runs in a
worker thread when a file or the catalog changes, a decision inline on every request. They
meet at one value, the store's `current` set, which a load replaces whole and a decision reads
once. The gateway builds both from one policy directory and hands each part to whoever needs
it: the pipeline decides, the runtime reloads, health and the CLI read the status.
"""

from __future__ import annotations

from pathlib import Path

from gateway.policy.context import ArgumentLimits
from gateway.policy.decisions import PolicyDecisions
from gateway.policy.store import PolicyStore


class PolicyEngine:
    """The policies of one directory: `store` (load, reload, status) and `decisions` (per request)."""

    __slots__ = ("decisions", "store")

    def __init__(self, policy_dir: Path, *, limits: ArgumentLimits | None = None) -> None:
        self.store = PolicyStore(policy_dir)
        self.decisions = PolicyDecisions(self.store, limits=limits)
