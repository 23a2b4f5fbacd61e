"""Held calls waiting for people: the durable approval record and its state machine.

- `model`: the states and allowed moves (`TRANSITIONS`), `Approval`, `Vote`; the `Requirement` a
  policy asks for is `gateway.policy.hold`'s.
- the canonical identity of a call (RFC 8785 JSON, SHA-256), for retries to find it, and the kept
  outcome of a run are `gateway.executions`', shared with de-duplicated calls.
- `sealing`: the exact arguments, encrypted at rest with rotating AES-GCM keys.
- `store`: `ApprovalStore`, every change a compare-and-set in the database, each one audited.
- `sweeper`: expiries and escalations, by the one process that holds the sweeper's lease.
- `ids`: UUIDv7 ids.

Nothing here decides which calls are held (the policies do) or waits on a request (the
pipeline's hold stage does); this is the storage both build on.
"""

from gateway.approvals.ids import uuid7
from gateway.approvals.model import OPEN_STATES, TRANSITIONS, Approval, ApprovalKind, ApprovalState, Vote
from gateway.approvals.sealing import Sealer
from gateway.approvals.store import ApprovalPage, ApprovalStore
from gateway.executions.digest import arguments_digest, canonical_form
from gateway.policy.hold import Requirement

__all__ = [
    "OPEN_STATES",
    "TRANSITIONS",
    "Approval",
    "ApprovalKind",
    "ApprovalPage",
    "ApprovalState",
    "ApprovalStore",
    "Requirement",
    "Sealer",
    "Vote",
    "arguments_digest",
    "canonical_form",
    "uuid7",
]
