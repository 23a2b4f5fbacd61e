"""The write-ahead audit log: gateway.toml's `[audit]` table and its `[audit.redaction]`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.settings.base import SettingsModel

#: Argument names whose values are removed unless `keys` is set: the names credentials usually go by.
DEFAULT_SENSITIVE_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "access_token",
    "refresh_token",
    "client_secret",
    "private_key",
    "cookie",
)


class RedactionSettings(SettingsModel):
    """What to remove and how much to keep; the gateway config's `[audit.redaction]` table.

    `tools` maps an exposed tool name to extra rules for its arguments: a rule starting with `/`
    is a path of keys and list indices (`/customer/card/number`, `*` matches any one step), any
    other rule is a key name matched like `keys`, at any depth.
    """

    keys: tuple[str, ...] = Field(
        default=DEFAULT_SENSITIVE_KEYS,
        description=(
            "Argument names whose values are removed at any depth, matched by words whatever the case or separator "
            "(`token` matches `session_token`, not `max_tokens`). Setting it replaces the list; add with `extra_keys`."
        ),
    )
    extra_keys: tuple[str, ...] = Field(default=(), description="More sensitive names, on top of `keys`.")
    tools: dict[str, tuple[str, ...]] = Field(
        default={},
        description=(
            "Per exposed tool name, more rules: `/a/b` is a path of keys (`*` any one step), anything else a key name."
        ),
    )
    max_argument_bytes: int = Field(
        default=64 * 1024,
        ge=256,
        description="Larger arguments (as JSON) are stored as a preview this long, with the size and SHA-256 of all.",
    )
    max_depth: int = Field(default=64, ge=1, le=200, description="Nesting kept in stored arguments; deeper is cut.")
    max_nodes: int = Field(
        default=1_000_000, ge=1, description="Values kept in one stored argument object; more are cut."
    )
    max_text_chars: int = Field(
        default=16 * 1024, ge=64, description="Characters kept of a text (reasoning, log line, span attribute)."
    )
    label_kinds: bool = Field(
        default=True, description="Say what was removed (`[REDACTED:jwt]`) instead of only `[REDACTED]`."
    )


class AuditSettings(SettingsModel):
    """The audit log: who writes it, how it is signed, kept and read.

    `replica_id` names this gateway's hash chain; every process writing to one database needs its
    own, which a lease in the database enforces. `signing_key` is an Ed25519 private key (PEM) that
    signs the periodic checkpoints, which `gateway audit checkpoints` exports for `audit verify`.
    """

    replica_id: str | None = Field(
        default=None,
        description=(
            "Name of this process's audit hash chain. Unset: one unique to each process start (host name, pid and a "
            "random part; workers add `-w<index>`). A start is refused while another live process holds the same id."
        ),
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description=(
            "How long this process's claim on its replica id lasts without a heartbeat (renewed every third of it). "
            "When a process dies, its id is free again after this long, and a live process then records the calls "
            "it left open as 'unknown'. Clocks of hosts sharing the database must agree to well within it."
        ),
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs checkpoints (`openssl genpkey -algorithm ed25519`).",
    )
    checkpoint_every: int = Field(default=1000, ge=1, description="Entries between two checkpoints of the chain.")
    max_batch: int = Field(default=256, ge=1, description="Most entries committed in one transaction (group commit).")
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Milliseconds the writer may keep a batch open for callers when busy; a lone call never waits.",
    )
    write_timeout: float = Field(
        default=5.0, gt=0, description="Seconds an audit write may take before the call is refused."
    )
    retention_days: float | None = Field(
        default=None, gt=0, description="Entries older than this are pruned daily; unset: kept for ever."
    )
    admin_roles: tuple[str, ...] = Field(
        default=("gateway-admin",), description="Roles whose principals may read `/api/audit/...`."
    )
    redaction: RedactionSettings = Field(
        default=RedactionSettings(),
        description="What is removed from arguments, reasoning and text before anything is stored, logged or traced.",
    )
