"""What an audit event holds: the kinds, their payloads, and the values handed to callers.

Payloads are built from already-redacted parts and never change once hashed. The few fields
search needs are copied into indexed columns by `index_columns`; verification calls the same
function to check that those copies still agree with the hashed content.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from gateway.audit.chain import canonical_json, isoformat
from gateway.audit.redaction import clean_text

CALL: Final = "call"
OUTCOME: Final = "outcome"
AUTH_REFUSED: Final = "auth_refused"
CHECKPOINT: Final = "checkpoint"
RECOVERED: Final = "recovered"
#: A held call's approval changed: made, voted on, decided, run, ended (see `gateway.approvals`).
APPROVAL: Final = "approval"
#: A person did something in the web console: signed in or out, decided, changed a key or a user.
CONSOLE: Final = "console"
#: An operator suspended an agent (every request of it refused) or resumed it (see `gateway.coordination`).
SUSPENSION: Final = "suspension"
#: A tool's pinned definition changed state: pinned, held, quarantined, accepted, restored (see `gateway.pinning`).
TOOL_PIN: Final = "tool_pin"
KINDS: Final = frozenset({CALL, OUTCOME, AUTH_REFUSED, CHECKPOINT, RECOVERED, APPROVAL, CONSOLE, SUSPENSION, TOOL_PIN})

Outcome = Literal[
    "ok",
    "tool_error",
    "backend_error",
    "timeout",
    "cancelled",
    "denied",
    "refused",
    "invalid_arguments",
    "locked",
    "unknown",
    "replayed",
]
OUTCOMES: Final = frozenset(
    {
        "ok",
        "tool_error",
        "backend_error",
        "timeout",
        "cancelled",
        "denied",
        "refused",
        "invalid_arguments",
        "held",
        "locked",
        "unknown",
        #: A repeat of a de-duplicated call answered with the first call's recorded result; nothing ran.
        "replayed",
    }
)

#: Longest value copied into an indexed column (full values stay in the hashed content).
COLUMN_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class CallHandle:
    """Proof that a call's event is durable; hand it back to `record_outcome` when the call ends."""

    call_id: str
    replica_id: str
    seq: int
    time: datetime
    method: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Timings:
    """Where a call's time went, in milliseconds: deciding, at the backend, and in all.

    A stage the call never reached (a refused call has no backend time) is None, so a slow call
    shows which side was slow.
    """

    policy_ms: float | None = None
    backend_ms: float | None = None
    total_ms: float | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored event as read back: its place in its chain and its payload."""

    replica_id: str
    seq: int
    kind: str
    time: datetime
    call_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "seq": self.seq,
            "kind": self.kind,
            "time": isoformat(self.time),
            "call_id": self.call_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class AuditCall:
    """A call joined with its outcome (None while it runs, or if the outcome was never recorded)."""

    call_id: str
    replica_id: str
    seq: int
    time: datetime
    call: dict[str, Any]
    outcome: dict[str, Any] | None
    outcome_time: datetime | None

    @property
    def agent(self) -> str | None:
        return self.call.get("agent")

    @property
    def tool(self) -> str | None:
        return self.call.get("name")

    @property
    def decision(self) -> str | None:
        return self.call.get("decision")

    @property
    def outcome_name(self) -> str | None:
        return self.outcome.get("outcome") if self.outcome else None

    def to_json(self) -> dict[str, Any]:
        """One flat-ish JSON object per call: what the CLI, the API and exports show."""
        return {
            "call_id": self.call_id,
            "replica": self.replica_id,
            "seq": self.seq,
            "time": isoformat(self.time),
            **self.call,
            "outcome": self.outcome_name,
            "outcome_time": isoformat(self.outcome_time) if self.outcome_time else None,
            "result": self.outcome,
        }


def event_from_content(content: str, *, prev_hash: str, hash: str) -> AuditEvent:
    """Rebuild an event from its stored canonical content."""
    parsed = orjson.loads(content)
    return AuditEvent(
        replica_id=parsed["replica"],
        seq=parsed["seq"],
        kind=parsed["kind"],
        time=datetime.fromisoformat(parsed["time"]),
        call_id=parsed["call_id"],
        data=parsed["data"],
        prev_hash=prev_hash,
        hash=hash,
    )


def new_call_id(now_ns: int | None = None) -> str:
    """A UUIDv7 as 32 hex digits: unique, and in the order the calls were recorded (per millisecond).

    Each commit writes every index page it touches; a random id would put each call's entry on
    a random page of the call-id index, often one no commit touched lately. Time-ordered ids
    land where the previous call's did (and its outcome, which carries the same id).
    """
    milliseconds = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    value = (milliseconds & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return f"{value:032x}"


def column_text(value: object, limit: int | None = COLUMN_CHARS) -> str | None:
    """A value as an indexed column holds it: text, no NUL (PostgreSQL refuses it), bounded."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit is not None else text


def index_columns(kind: str, data: dict[str, Any]) -> dict[str, str | None]:
    """The indexed copies of an event's fields, derived from its payload alone."""
    columns: dict[str, str | None] = {
        "agent": None,
        "user_id": None,
        "tool": None,
        "workflow_id": None,
        "decision": None,
        "outcome": None,
        "reasoning": None,
    }
    if kind == CALL:
        columns["agent"] = column_text(data.get("agent"))
        columns["user_id"] = column_text(data.get("user"))
        columns["tool"] = column_text(data.get("name"))
        columns["workflow_id"] = column_text(data.get("workflow_id"))
        columns["decision"] = column_text(data.get("decision"), 32)
        columns["reasoning"] = column_text(data.get("reasoning"), None)
    elif kind == OUTCOME:
        columns["outcome"] = column_text(data.get("outcome"), 32)
    elif kind == APPROVAL:
        columns["agent"] = column_text(data.get("agent"))
        columns["user_id"] = column_text(data.get("user"))
        columns["tool"] = column_text(data.get("tool"))
        columns["workflow_id"] = column_text(data.get("workflow_id"))
    elif kind == SUSPENSION:
        columns["agent"] = column_text(data.get("agent"))
    elif kind == TOOL_PIN:
        columns["tool"] = column_text(data.get("exposed"))
    return columns


def outcome_payload(
    outcome: str,
    *,
    result_bytes: int | None = None,
    result_sha256: str | None = None,
    timings: Timings | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    recovered: bool = False,
) -> dict[str, Any]:
    """The payload of an `outcome` event (texts must already be redacted)."""
    timings = timings or Timings()
    return {
        "outcome": outcome,
        "result": {"bytes": result_bytes, "sha256": result_sha256} if result_sha256 is not None else None,
        "latency_ms": {
            "policy": _ms(timings.policy_ms),
            "backend": _ms(timings.backend_ms),
            "total": _ms(timings.total_ms),
        },
        "error": {"type": error_type, "message": error_message} if error_type or error_message else None,
        "recovered": recovered,
    }


def result_digest(result: Any) -> tuple[int, str]:
    """Size and SHA-256 of a result: of its bytes as sent, or of its canonical JSON."""
    if isinstance(result, bytes | bytearray | memoryview):
        raw = bytes(result)
    else:
        try:
            raw = canonical_json(result)
        except TypeError:
            raw = canonical_json(str(result))
    return len(raw), hashlib.sha256(raw).hexdigest()


def short_text(value: str | None) -> str | None:
    """A caller-supplied name or id as stored: valid UTF-8, at most 1024 characters."""
    return clean_text(value)[:1024] if value is not None else None


def request_id_value(value: str | int | None) -> str | int | None:
    """A JSON-RPC request id as stored: a 64-bit integer stays a number, anything else is text."""
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    return short_text(str(value))


def _ms(value: float | None) -> float | None:
    return round(float(value), 3) if value is not None else None
