"""A call that must run at most once, whatever the retries: what held calls and de-duplicated calls share.

An approved call (`gateway.approvals`) and a call with an idempotency key
(`gateway.coordination.idempotency`) are both taken by one request, run once, and their outcome
kept so that a repeat receives it instead of a second run. Both therefore need the same parts,
kept here once:

- `digest`: the canonical identity of a call (RFC 8785 JSON, SHA-256), for a repeat to find it;
- `outcomes`: the states of one run (`executing` → `succeeded` | `failed` | `unknown`), and the
  outcome kept as bytes within a bound and handed back to a repeat.
"""

from gateway.executions.digest import arguments_digest, canonical_form
from gateway.executions.outcomes import (
    UNKNOWN_AFTER_CRASH,
    ExecutionState,
    bounded,
    error_result,
    kept_result,
    outcome_bytes,
)

__all__ = [
    "UNKNOWN_AFTER_CRASH",
    "ExecutionState",
    "arguments_digest",
    "bounded",
    "canonical_form",
    "error_result",
    "kept_result",
    "outcome_bytes",
]
