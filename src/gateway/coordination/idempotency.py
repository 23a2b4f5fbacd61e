"""Duplicate calls: a repeat of a call a connector file names by its idempotency key runs once.

A connector file says what makes two calls of a tool the same call (`idempotency_key`: argument
paths such as `args.invoice_id`, or `digest` for all the arguments). After the access decision
and any hold, and before anything is forwarded, the pipeline asks `Duplicates.claim`:

- the first call with a key inserts its record (`IdempotencyStore.take`) and runs;
- a repeat within `idempotency_window` of its finish receives the recorded result, marked as a
  replay in the audit log (outcome `replayed`), and nothing reaches the backend;
- a repeat while the first still runs waits for it up to `idempotency_wait` seconds (with
  progress notifications when asked), then is told to repeat later (`DuplicateInProgress`);
- a repeat of a call whose outcome is unknown (the gateway stopped while it ran, or the backend
  timed out or went away mid-call) is refused (`DuplicateOutcomeUnknown`) until an operator who
  checked the backend clears it (`gateway idempotency clear`).

What is recorded: a result without `isError` is kept and replayed. A tool error, a backend's
JSON-RPC error, or a call that never reached the backend (no connection, the audit log refused
it) did nothing the agent must not repeat, so its record is released and a repeat runs afresh.

Scope: by default a key value is one call whichever agent makes it: two agents paying one
invoice pay it once, which is the duplicate that costs money. Every caller that gets a replay
passed the access policies for that very call first; `idempotency_scope = "agent"` keeps each
agent's calls apart for tools whose results differ by caller.

Read-only tools (`readOnlyHint`) are never de-duplicated by a connector-wide key; only a key set
on the tool itself applies to them. A call to a tool without a key costs one dictionary look-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson

from gateway.audit import Redactor
from gateway.calls import Call
from gateway.catalog import ToolEntry
from gateway.connectors.base import JsonObject, ProgressCallback
from gateway.coordination.idempotency_store import IdempotencyRecord, IdempotencyStore, NewRun
from gateway.errors import (
    BackendError,
    BackendNotConnected,
    DuplicateInProgress,
    DuplicateKeyReused,
    DuplicateOutcomeUnknown,
    InvalidArguments,
    MissingIdempotencyKey,
)
from gateway.executions import ExecutionState, arguments_digest, bounded, kept_result, outcome_bytes
from gateway.settings.connectors import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    DIGEST_KEY,
    NO_KEY,
    ConnectorBase,
)

logger = logging.getLogger(__name__)

#: `_meta` key of a replayed result: the audit call that ran it and when it finished.
REPLAY_META_KEY = "io.autonomy-gateway/replay"
#: How often a repeat looks at the record of a call another process runs (this process's own runs ring it).
LOOK_EVERY_SECONDS = 0.25
#: Seconds between progress notifications to a repeat waiting for the first call.
PROGRESS_EVERY_SECONDS = 5.0
#: Longest text an operator is shown of a key's values.
_KEY_SHOWN_CHARS = 500


@dataclass(frozen=True, slots=True)
class IdempotencyRule:
    """How one tool's calls are de-duplicated: the key, for how long, across whom, and how long a repeat waits."""

    key: str | tuple[str, ...]
    window: timedelta
    scope: str = "tool"
    wait: float = 30.0
    #: Set on the tool itself, not inherited from the connector: applies to a read-only tool too.
    own: bool = True

    def describe(self) -> str:
        return "all the arguments" if self.key == DIGEST_KEY else ", ".join(_paths(self.key))


@dataclass(frozen=True, slots=True)
class Claim:
    """This request runs the call: the record to finish, and the rule it runs under."""

    record: IdempotencyRecord
    rule: IdempotencyRule


@dataclass(frozen=True, slots=True)
class Replay:
    """A repeat answered from the record: the result, and what the audit entry says of it."""

    record: IdempotencyRecord
    result: JsonObject
    reason: str


def rules_of(
    connectors: Iterable[ConnectorBase],
) -> tuple[dict[tuple[str, str], IdempotencyRule], dict[str, IdempotencyRule]]:
    """(rules set on tools, by connector and backend tool name; connector-wide rules, by connector)."""
    tools: dict[tuple[str, str], IdempotencyRule] = {}
    wide: dict[str, IdempotencyRule] = {}
    for connector in connectors:
        window = connector.idempotency_window or DEFAULT_IDEMPOTENCY_WINDOW
        if connector.idempotency_key not in (None, NO_KEY):
            assert connector.idempotency_key is not None
            wide[connector.name] = IdempotencyRule(connector.idempotency_key, window, own=False)
        for name, override in connector.tools.items():
            key = override.idempotency_key
            if key == NO_KEY:
                tools[(connector.name, name)] = IdempotencyRule(NO_KEY, window)
            elif key is not None or (override.idempotency_window is not None and connector.name in wide):
                tools[(connector.name, name)] = IdempotencyRule(
                    key if key is not None else wide[connector.name].key,
                    override.idempotency_window or window,
                    scope=override.idempotency_scope,
                    wait=override.idempotency_wait,
                    own=key is not None,
                )
    return tools, wide


class Duplicates:
    """The de-duplication stage: which calls have a key, taking them, and recording how they ended."""

    def __init__(
        self,
        store: IdempotencyStore | None,
        connectors: Iterable[ConnectorBase] = (),
        *,
        redactor: Redactor | None = None,
        max_result_bytes: int = 64 * 1024,
        clock: Any = None,
    ) -> None:
        self._store = store
        self._tools, self._wide = rules_of(connectors)
        self._configured = bool(self._tools or self._wide)
        self._redactor = redactor or Redactor()
        self._bound = max_result_bytes
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Rung when a run of this process ends, so a repeat waiting here looks at once.
        self._ended: dict[str, anyio.Event] = {}

    @property
    def store(self) -> IdempotencyStore | None:
        return self._store

    @property
    def configured(self) -> bool:
        """Whether any connector file gives any tool an idempotency key."""
        return self._configured

    def rule_for(self, call: Call, entry: Any) -> IdempotencyRule | None:
        """The rule of this tool call, or None: the hot path, one look-up when nothing is configured."""
        if not self._configured or call.method != "tools/call" or not isinstance(entry, ToolEntry):
            return None
        rule = self._tools.get((entry.connector, entry.original))
        if rule is None:
            rule = self._wide.get(entry.connector)
            if rule is None or entry.annotations.get("readOnlyHint") is True:
                return None
        return None if rule.key == NO_KEY else rule

    async def claim(
        self, call: Call, entry: ToolEntry, rule: IdempotencyRule, on_progress: ProgressCallback | None
    ) -> Claim | Replay:
        """Take the call for this request, or answer it from the record of the same call.

        Raises `MissingIdempotencyKey`, `DuplicateInProgress` (the first still runs after the wait)
        or `DuplicateOutcomeUnknown`.
        """
        if self._store is None:
            raise RuntimeError("a de-duplicated call needs the idempotency store")
        store = self._store
        run = self._run_of(call, entry, rule)
        deadline = anyio.current_time() + rule.wait
        next_progress = anyio.current_time()
        step = 0
        record = None
        while True:
            # Inserted only when no record was seen: a failed insert is an error line in PostgreSQL's log.
            if record is None:
                taken = await store.take(run)
                if taken is not None:
                    return Claim(taken, rule)
            record = await store.find(run.key_digest)
            if record is None:
                continue  # released or cleared since the insert failed: take it now
            if record.arguments_digest is not None and record.arguments_digest != run.arguments_digest:
                raise DuplicateKeyReused(_reused_message(entry.exposed, rule, record))
            if record.state is ExecutionState.SUCCEEDED:
                assert record.expires_at is not None
                if record.expires_at > self._clock():
                    await store.replayed(record.id)
                    return self._replay(entry, rule, record)
                await store.drop_expired(record.id)
                record = None  # past its window: the call may run again
                continue
            if record.state is ExecutionState.UNKNOWN:
                raise DuplicateOutcomeUnknown(_unknown_message(entry.exposed, rule, record))
            now = anyio.current_time()
            if now >= deadline:
                raise DuplicateInProgress(_in_progress_message(entry.exposed, rule, record))
            if on_progress is not None and now >= next_progress:
                await on_progress(float(step), None, f"waiting for the same call (by {record.agent}) to finish")
                step += 1
                next_progress = now + PROGRESS_EVERY_SECONDS
            ended = self._ended.setdefault(run.key_digest, anyio.Event())
            with anyio.move_on_after(min(LOOK_EVERY_SECONDS, deadline - now)):
                await ended.wait()

    async def finished(
        self, claim: Claim, *, call_id: str | None, result: JsonObject | None, error: BaseException | None
    ) -> None:
        """Record how the claimed run ended (see the module's rules); shielded, as a run must not stay `executing`."""
        assert self._store is not None
        record = claim.record
        with anyio.CancelScope(shield=True):
            try:
                if result is not None and not result.get("isError"):
                    _, whole = outcome_bytes(result, None, failure="")
                    kept, truncated = bounded(whole, self._bound)
                    expires_at = self._clock() + claim.rule.window
                    await self._store.succeeded(
                        record.id, call_id=call_id, result=kept, truncated=truncated, expires_at=expires_at
                    )
                elif result is not None or _did_nothing(error):
                    await self._store.release(record.id)
                else:
                    await self._store.unknown(record.id, call_id=call_id)
                    logger.warning(
                        "a de-duplicated call ended without a known outcome; repeats are refused until it is cleared",
                        extra={"record_id": record.id, "tool": record.tool, "error": type(error).__name__},
                    )
            finally:
                self._ring(record.key_digest)

    async def abandoned(self, claim: Claim) -> None:
        """The claimed call was never sent (its audit entry could not be written): free its key."""
        assert self._store is not None
        with anyio.CancelScope(shield=True):
            try:
                await self._store.release(claim.record.id)
            finally:
                self._ring(claim.record.key_digest)

    def _ring(self, key_digest: str) -> None:
        ended = self._ended.pop(key_digest, None)
        if ended is not None:
            ended.set()

    def _run_of(self, call: Call, entry: ToolEntry, rule: IdempotencyRule) -> NewRun:
        arguments = call.arguments if isinstance(call.arguments, Mapping) else {}
        if rule.key == DIGEST_KEY:
            values: Any = arguments
            shown = f"all arguments (digest {arguments_digest(entry.exposed, arguments, purpose=_PURPOSE)[:16]})"
        else:
            values = {path: _value_at(arguments, path, entry.exposed) for path in _paths(rule.key)}
            shown = _shown(self._redactor, entry.exposed, values)
        scope = call.principal.agent if rule.scope == "agent" else None
        digest = arguments_digest(entry.exposed, {"key": values, "agent": scope}, purpose=_PURPOSE)
        target = call.target
        return NewRun(
            key_digest=digest,
            tool=entry.exposed,
            connector=target.connector if target is not None else entry.connector,
            key_shown=shown,
            agent=call.principal.agent,
            workflow=call.workflow,
            arguments_digest=self._whole_digest(entry.exposed, arguments),
        )

    @staticmethod
    def _whole_digest(tool: str, arguments: Any) -> str | None:
        """All the arguments' digest, to tell a repeat from another call reusing its key (None: not comparable)."""
        try:
            return arguments_digest(tool, arguments, purpose=_PURPOSE)
        except InvalidArguments:
            return None  # a value with no canonical form (a huge integer) in an argument outside the key

    def _replay(self, entry: ToolEntry, rule: IdempotencyRule, record: IdempotencyRecord) -> Replay:
        finished = _when(record.finished_at)
        too_large = (
            f"'{entry.exposed}' already ran for this idempotency key ({record.key_shown}) at {finished}, but its "
            f"result was larger than {self._bound} bytes and was not kept; it is not run again."
        )
        result = dict(kept_result(record.result, record.result_truncated, too_large=too_large))
        meta = dict(result.get("_meta") or {})
        meta[REPLAY_META_KEY] = {"call_id": record.call_id, "finished_at": finished, "agent": record.agent}
        result["_meta"] = meta
        reason = (
            f"replay of call {record.call_id} by {record.agent} at {finished}: same idempotency key "
            f"({rule.describe()}: {record.key_shown}) within {_span(rule.window)}; nothing was forwarded"
        )
        return Replay(record, result, reason)


_PURPOSE = "used as an idempotency key"


def _did_nothing(error: BaseException | None) -> bool:
    """A failure after which the backend surely did nothing: never sent, or refused by the backend itself."""
    return isinstance(error, BackendNotConnected | BackendError)


def _paths(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else key


def _value_at(arguments: Mapping[str, Any], path: str, tool: str) -> Any:
    value: Any = arguments
    for part in path.split(".")[1:]:
        value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            raise MissingIdempotencyKey(
                f"'{tool}' runs at most once per {path}, and this call gives no {path}: give it (the same value "
                "when repeating a call), so the gateway can tell a repeat from a new call"
            )
    return value


def _shown(redactor: Redactor, tool: str, values: Mapping[str, Any]) -> str:
    nested: dict[str, Any] = {}
    for path, value in values.items():
        node = nested
        parts = path.split(".")[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    redacted = redactor.redact_arguments(nested, tool=tool)
    text = orjson.dumps(redacted.value).decode() if redacted.value is not None else (redacted.preview or "")
    return text[:_KEY_SHOWN_CHARS]


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _in_progress_message(tool: str, rule: IdempotencyRule, record: IdempotencyRecord) -> str:
    return (
        f"'{tool}' with the same idempotency key ({rule.describe()}: {record.key_shown}) is still running, "
        f"started by {record.agent} at {_when(record.created_at)}; this call did not run. Repeat the identical "
        "call later to receive that call's result: it runs once, never twice. (If the gateway process running "
        "it stopped, the call's outcome becomes unknown once another process takes over its audit chain, and a "
        "repeat says so.)"
    )


def _reused_message(tool: str, rule: IdempotencyRule, record: IdempotencyRecord) -> str:
    return (
        f"'{tool}' was not run: its idempotency key ({rule.describe()}: {record.key_shown}) belongs to a call "
        f"{record.agent} started at {_when(record.created_at)} with other arguments, so this is a different call, "
        "not a repeat, and that call's outcome is not returned for it. Send the identical arguments to get that "
        "call's outcome, or give a different call its own key value."
    )


def _unknown_message(tool: str, rule: IdempotencyRule, record: IdempotencyRecord) -> str:
    return (
        f"'{tool}' with the same idempotency key ({rule.describe()}: {record.key_shown}) was started by "
        f"{record.agent} at {_when(record.created_at)}, but its outcome is unknown (the gateway stopped or the "
        "backend stopped answering while it ran), so it is neither run again nor replayed. Check in the backend "
        f"whether it took effect; an operator then clears it with `gateway idempotency clear {record.id}`."
    )
