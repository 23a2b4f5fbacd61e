"""The audit log: every call, durably recorded before it runs, redacted, hash-chained, verifiable.

- `Redactor` removes credentials from everything before it is stored (`redaction`).
- `AuditRecorder` writes events write-ahead with group commit, one hash chain per replica, and
  closes calls a crash left open with the outcome `unknown` (`recorder`).
- `verify` recomputes the chains and checks exported, signed checkpoints (`verify`,
  `checkpoints`); `prune` deletes old events without breaking verification (`retention`).
- `search`, `get_call`, `tail` read the log (`query`); `export` writes it out (`export`).

The JSON API over HTTP is the front's (`gateway.front.audit_api`); the commands are the CLI's.
"""

from gateway.audit.chain import load_private_key, load_public_key
from gateway.audit.checkpoints import Checkpoint, export_checkpoints, load_checkpoints, read_checkpoints
from gateway.audit.entry import OUTCOMES, AuditCall, AuditEvent, CallHandle, Outcome, Timings
from gateway.audit.export import ExportReport, export
from gateway.audit.query import SearchPage, get_call, parse_duration, parse_time, search, tail
from gateway.audit.recorder import AuditRecorder, RecorderStats, RecoveryReport, ToolPinEvent, default_replica_id
from gateway.audit.redaction import RedactedArguments, Redactor
from gateway.audit.retention import PruneReport, prune
from gateway.audit.verify import Problem, VerifyReport, verify

__all__ = [
    "OUTCOMES",
    "AuditCall",
    "AuditEvent",
    "AuditRecorder",
    "CallHandle",
    "Checkpoint",
    "ExportReport",
    "Outcome",
    "Problem",
    "PruneReport",
    "RecorderStats",
    "RecoveryReport",
    "RedactedArguments",
    "Redactor",
    "SearchPage",
    "Timings",
    "ToolPinEvent",
    "VerifyReport",
    "default_replica_id",
    "export",
    "export_checkpoints",
    "get_call",
    "load_checkpoints",
    "load_private_key",
    "load_public_key",
    "parse_duration",
    "parse_time",
    "prune",
    "read_checkpoints",
    "search",
    "tail",
    "verify",
]
