"""One run of a call that must not run twice: its states, and its outcome kept for the repeats.

The moves are the same wherever such a run is kept: a request takes the call (`executing`, in
one compare-and-set or one unique insert, so two replicas never both take it), and the run ends
`succeeded` or `failed` with the result the agent received, or `unknown` when the gateway
stopped while it ran. Whether an unknown run reached the backend cannot be known, so it is never
run again nor answered as if it had succeeded: a person checks the backend.

The outcome is kept as the JSON bytes the agent received, cut at a bound (a tool may return
megabytes); a repeat of a call whose outcome was cut hears that it ran and that its result was
not kept, rather than a truncated document.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson

JsonObject = dict[str, Any]

#: Why a run became `unknown`: what the audit log and the operator are told.
UNKNOWN_AFTER_CRASH = "the gateway stopped while the call ran; whether the backend ran it is unknown"


class ExecutionState(StrEnum):
    """Where one run of a call stands."""

    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The gateway stopped while the call ran: whether the backend did it is not known, so it is never re-run.
    UNKNOWN = "unknown"


def error_result(text: str) -> JsonObject:
    """A tool result with `isError`, for the model to read `text`."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


def outcome_bytes(result: JsonObject | None, error: BaseException | None, *, failure: str) -> tuple[bool, bytes]:
    """(succeeded, the outcome as JSON bytes): the result, or `failure: error` as a tool error.

    A result with `isError` did not succeed: the backend ran and reported an error.
    """
    if result is not None:
        return not result.get("isError"), orjson.dumps(result)
    return False, orjson.dumps(error_result(f"{failure}: {error}"))


def bounded(outcome: bytes, bound: int) -> tuple[bytes, bool]:
    """(what is kept of `outcome`, whether it was cut): at most `bound` bytes."""
    kept = outcome[:bound]
    return kept, len(outcome) > len(kept)


def kept_result(kept: bytes | None, truncated: bool, *, too_large: str) -> JsonObject:
    """What a repeat receives: the stored result, or a tool error saying `too_large` when it was not kept whole."""
    if truncated or kept is None:
        return error_result(too_large)
    result: Any = orjson.loads(kept)
    return result if isinstance(result, dict) else error_result("the stored outcome of the call is unreadable")
