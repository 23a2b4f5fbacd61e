"""Pinned tool definitions: the accepted definition of every backend tool, and quarantine of changed ones.

- `store`: the `tool_pins` and `tool_reviews` tables, written so each transition happens once across replicas;
- `keeper`: what a process does with a backend's listing (pin, hold, quarantine, restore), and
  the audit events, webhooks, log lines and signals that go with it; accepting a tool.
"""

from gateway.pinning.keeper import PinKeeper
from gateway.pinning.store import PinStore

__all__ = ["PinKeeper", "PinStore"]
